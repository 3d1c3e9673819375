/** The _stat files rendered from the engine, and the hooks other modules publish through. */
import { describe, expect, it } from 'vitest';
import { MetricsEngine } from './engine.js';
import { ShmrMetrics } from './instruments.js';
import { match } from './query.js';
import { statContent } from './stat-files.js';

const OPTIONS = { collectIntervalMs: 100, flushIntervalMs: 100, retentionIntervals: 10, highResolutionIntervals: 1 };

function setup() {
  const metrics = new ShmrMetrics();
  const engine = new MetricsEngine(metrics.registry, OPTIONS);
  const pools = () => [{ pool: 'ssd', buckets: [{ name: 'ssd0', state: 'ok', freeBytes: 1e9, totalBytes: 2e9 }] }];
  return { metrics, engine, content: statContent({ engine, metrics, pools }) };
}

describe('stat files', () => {
  it('lists tasks and their progress from the task hook', () => {
    const { metrics, engine, content } = setup();
    expect(content.render('tasks').toString()).toBe('no tasks\n');
    metrics.setTaskSource(() => [{ id: 'move-1', kind: 'move', state: 'running', doneUnits: 25, totalUnits: 100, detail: 'ssd -> archive' }]);
    metrics.setTombstoneSource(() => [['archive', 4096]]);
    engine.sweep(Date.now());
    expect(content.render('tasks').toString()).toBe('move-1 move running 25/100 (25.0%) ssd -> archive\n');
    expect(engine.get('task_progress_ratio', [match('task', 'move-1')]).last()).toBe(0.25);
    expect(engine.get('tombstone_bytes', [match('pool', 'archive')]).last()).toBe(4096);
  });

  it('renders families, pools and graphs', () => {
    const { metrics, engine, content } = setup();
    metrics.blockWritten('ssd', 1 << 20, 0.002);
    metrics.fuseOp('write').count.inc();
    engine.flush(Date.now());
    expect(content.names()).toEqual(expect.arrayContaining(['fuse_operations_total', 'pools', 'tasks', 'throughput.svg']));
    expect(content.render('fuse_operations_total').toString()).toMatch(/^fuse_operations_total\{op="write"\} 1 /m);
    expect(content.render('block_operation_duration_seconds').toString())
      .toMatch(/^block_operation_duration_seconds\{pool="ssd",op="write"\} 1 0\.002/m);
    expect(content.render('pools').toString()).toMatch(/^pool ssd: read 0B\/s, write .*\n  bucket ssd0: ok, 1GB free of 2GB\n$/);
    const svg = content.render('throughput.svg').toString();
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain('<polyline');
    expect(svg).toContain('>ssd</text>');
  });
});
