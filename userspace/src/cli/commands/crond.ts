/**
 * `shmr crond [--config FILE] [--dbus]`: the housekeeping process. Calls the running daemon's
 * mover, tombstone purge and scrub on the schedule of the config's `housekeeping` section, until
 * SIGINT or SIGTERM (exit 0). With --dbus the calls go through the D-Bus API (the bus of the
 * config's dbus.bus) instead of the control socket.
 */
import { parseArgs } from 'node:util';
import { socketTransport } from '../../daemon/control-transport.js';
import { dbusTransport } from '../../dbus/index.js';
import { Crond, housekeepingJobs } from '../../tiering/crond.js';
import { configFrom } from '../config-option.js';

export async function crondCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args], options: { config: { type: 'string', short: 'c' }, dbus: { type: 'boolean' } },
  });
  const config = configFrom(values.config);
  const jobs = housekeepingJobs(config);
  if (jobs.length === 0) {
    process.stderr.write('shmr crond: the config has no housekeeping schedule (housekeeping: mover/purge/scrub)\n');
    return 2;
  }
  if (values.dbus === true && config.dbus.bus === 'none') {
    process.stderr.write('shmr crond: --dbus needs dbus.bus system or session in the config\n');
    return 2;
  }
  const transport = values.dbus === true && config.dbus.bus !== 'none'
    ? dbusTransport({ bus: config.dbus.bus, mountDir: config.mountDir })
    : socketTransport(config.metadataDir);
  const crond = new Crond(transport, jobs, (line) => process.stdout.write(`crond ${line}\n`));
  crond.start();
  process.stdout.write(`crond: ${jobs.map((job) => `${job.name} every ${job.intervalMs / 1000} s`).join(', ')}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  crond.stop();
  return 0;
}
