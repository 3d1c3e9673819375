import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { WRITE_TURN_BYTES_MIN, WriteTurns } from './write-turns.js';

describe('WriteTurns', () => {
  it('runs a small write at once while nothing waits, a large one in a later turn', async () => {
    const turns = new WriteTurns();
    expect(turns.mustWait(4096)).toBe(false);
    expect(turns.mustWait(WRITE_TURN_BYTES_MIN)).toBe(true);
    const ran: string[] = [];
    const large = turns.run(() => {
      ran.push('large');
      return 1;
    });
    // What arrives in the same batch (a READ answered at once) runs before the large write.
    ran.push('read');
    await expect(large).resolves.toBe(1);
    expect(ran).toEqual(['read', 'large']);
    expect(turns.mustWait(4096)).toBe(false);
  });

  it('keeps writes in arrival order: a small write waits behind large ones', async () => {
    const turns = new WriteTurns();
    const ran: number[] = [];
    const done = [0, 1, 2].map((index) => turns.run(() => {
      ran.push(index);
    }));
    expect(turns.mustWait(1)).toBe(true);
    done.push(turns.run(() => {
      ran.push(3);
    }));
    await Promise.all(done);
    expect(ran).toEqual([0, 1, 2, 3]);
  });

  it('lets the event loop poll for I/O between two waiting writes', async () => {
    const turns = new WriteTurns();
    const ran: string[] = [];
    // A message arrives through the loop's poll phase, as a request from /dev/fuse does.
    const { port1, port2 } = new MessageChannel();
    port2.on('message', () => ran.push('polled'));
    const first = turns.run(() => {
      ran.push('first');
      port1.postMessage('request');
    });
    const second = turns.run(() => {
      ran.push('second');
    });
    await Promise.all([first, second]);
    port1.close();
    expect(ran).toEqual(['first', 'polled', 'second']);
  });

  it('rejects with the error a write throws, and goes on with the next', async () => {
    const turns = new WriteTurns();
    const failing = turns.run(() => {
      throw new Error('EIO');
    });
    const next = turns.run(() => 7);
    await expect(failing).rejects.toThrow('EIO');
    await expect(next).resolves.toBe(7);
  });
});
