import { describe, expect, it } from 'vitest';
import { BufferShelf } from './buffer-shelf.js';

describe('BufferShelf', () => {
  it('hands back an idle buffer of the asked size, else a fresh one', () => {
    const shelf = new BufferShelf(1024);
    const first = shelf.take(256);
    shelf.put(first);
    expect(shelf.idleBytes).toBe(256);
    expect(shelf.take(128)).not.toBe(first);
    expect(shelf.take(256)).toBe(first);
    expect(shelf.idleBytes).toBe(0);
    expect(shelf.take(256)).not.toBe(first);
  });

  it('keeps no more idle bytes than its bound or the bound a put is given', () => {
    const shelf = new BufferShelf(512);
    const buffers = [shelf.take(256), shelf.take(256), shelf.take(256)];
    for (const buffer of buffers) shelf.put(buffer);
    expect(shelf.idleBytes).toBe(512);
    const taken = [shelf.take(256), shelf.take(256)];
    expect(taken).toEqual(expect.arrayContaining([buffers[0], buffers[1]]));
    shelf.put(taken[0]!, 0);
    expect(shelf.idleBytes).toBe(0);
  });

  it('drops idle buffers of other sizes to make room, never those of the same size', () => {
    const shelf = new BufferShelf(512);
    const small = shelf.take(256);
    const large = shelf.take(512);
    shelf.put(small);
    shelf.put(large);
    // The large one evicted the small one: the sizes in use changed.
    expect(shelf.idleBytes).toBe(512);
    expect(shelf.take(256)).not.toBe(small);
    expect(shelf.take(512)).toBe(large);
    shelf.put(large);
    shelf.put(shelf.take(512));
    expect(shelf.idleBytes).toBe(512);
  });
});
