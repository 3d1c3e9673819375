/**
 * The JSON schema of the config file (YAML is parsed to JSON first). Structure only: types,
 * required keys, unknown keys. Meaning (units, topologies, cross references, paths on disk)
 * is checked in config.ts, so that every message names the key and what is wrong with it.
 */

const size = { type: ['string', 'integer'] } as const;
const duration = { type: ['string', 'number'] } as const;

const bucket = {
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    path: { type: 'string', minLength: 1 },
    priority: { enum: ['prioritize', 'normal', 'deprioritize', 'ignore', 'evacuate'] },
  },
} as const;

const compression = {
  type: 'object',
  additionalProperties: false,
  required: ['algorithm'],
  properties: {
    algorithm: { enum: ['none', 'zstd', 'lz4'] },
    level: { type: 'integer' },
  },
} as const;

const pool = {
  type: 'object',
  additionalProperties: false,
  required: ['topology', 'block_size', 'buckets'],
  properties: {
    topology: { type: 'string' },
    block_size: size,
    compression,
    head_size: size,
    buckets: {
      type: 'object',
      minProperties: 1,
      additionalProperties: bucket,
      propertyNames: { pattern: '^[A-Za-z0-9_.-]{1,64}$' },
    },
  },
} as const;

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['mount_dir', 'metadata_dir', 'write_pool', 'pools'],
  properties: {
    mount_dir: { type: 'string', minLength: 1 },
    metadata_dir: { type: 'string', minLength: 1 },
    write_pool: { type: 'string', minLength: 1 },
    pools: {
      type: 'object',
      minProperties: 1,
      additionalProperties: pool,
      propertyNames: { pattern: '^[A-Za-z0-9_.-]{1,64}$' },
    },
    cache: {
      type: 'object',
      additionalProperties: false,
      properties: {
        memory_limit: size,
        flush_interval: duration,
        dirty_age: duration,
        writeback_delay: duration,
      },
    },
    fuse: {
      type: 'object',
      additionalProperties: false,
      properties: {
        allow_other: { enum: ['auto', true, false] },
        default_permissions: { type: 'boolean' },
        writeback_cache: { type: 'boolean' },
        entry_timeout: duration,
        attr_timeout: duration,
        options: { type: 'array', items: { type: 'string' } },
      },
    },
    tombstones: {
      type: 'object',
      additionalProperties: false,
      properties: { grace: duration },
    },
    mover: {
      type: 'object',
      additionalProperties: false,
      required: ['target'],
      properties: {
        source: { type: 'string', minLength: 1 },
        target: { type: 'string', minLength: 1 },
        topology: { type: 'string' },
        block_size: size,
        idle: duration,
        high_watermark: size,
        low_watermark: size,
        rate: size,
        yield_above: size,
      },
    },
    housekeeping: {
      type: 'object',
      additionalProperties: false,
      properties: { mover: duration, purge: duration, scrub: duration },
    },
    nbd: {
      type: 'object',
      additionalProperties: false,
      properties: {
        socket: { type: 'string', minLength: 1 },
        listen: { type: 'string', minLength: 1 },
        allow_remote: { type: 'boolean' },
      },
    },
    dbus: {
      type: 'object',
      additionalProperties: false,
      properties: {
        bus: { enum: ['system', 'session', 'none'] },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        collect_interval: duration,
        flush_interval: duration,
        retention: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        high_resolution_retention: { type: 'integer', minimum: 1, maximum: 3600 },
        history_max_size: size,
        stat_dir: { anyOf: [{ type: 'string', pattern: '^[^/]{1,255}$' }, { const: false }] },
        stat_dir_listed: { type: 'boolean' },
        prometheus: {
          type: 'object',
          additionalProperties: false,
          required: ['listen'],
          properties: { listen: { type: 'string', minLength: 1 } },
        },
        otlp: {
          type: 'object',
          additionalProperties: false,
          required: ['endpoint'],
          properties: { endpoint: { type: 'string', minLength: 1 }, interval: duration },
        },
      },
    },
  },
} as const;
