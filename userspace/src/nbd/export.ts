/**
 * What the NBD server serves, as the protocol needs it: a catalog of named exports and, per
 * open export, byte-range operations. The server validates every request (range, flags,
 * read-only) before calling these, so implementations see only in-range, permitted calls.
 *
 * volumes.ts implements them over shmr files; tests implement them in memory.
 */
import type { Extent } from './protocol.js';

/** What NBD_OPT_INFO / NBD_OPT_GO tell a client about an export. */
export interface ExportDescription {
  readonly name: string;
  readonly description: string;
  readonly sizeBytes: number;
  readonly isReadOnly: boolean;
  /** Aligned requests of this size avoid read-modify-write (a power of two, >= 512). */
  readonly preferredBlockBytes: number;
}

/** A write the export has taken. */
export interface WriteAccepted {
  /** Settles, never rejecting, when the export no longer reads the written buffer. */
  readonly released: Promise<void>;
}

/** For exports done with the buffer by the time a write resolves. */
export const RELEASED: WriteAccepted = { released: Promise.resolve() };

/** An export opened by one connection for its transmission phase. */
export interface NbdExport extends ExportDescription {
  /** Fills target[0, lengthBytes) with the bytes at offsetBytes. */
  read(offsetBytes: number, lengthBytes: number, target: Buffer): Promise<void>;
  /**
   * Writes `data` at offsetBytes. Resolves once reads and later writes see the bytes; storing
   * them may go on behind (flush makes them durable). `data` may be reused once `released`
   * settles (it never rejects); when this rejects, at once.
   */
  write(offsetBytes: number, data: Buffer): Promise<WriteAccepted>;
  /** Makes every write, trim and zero completed before this call durable. */
  flush(): Promise<void>;
  /** May discard the range (reads of it are then unspecified until rewritten). */
  trim(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Makes the range read as zeroes; with `mayPunch` it may free the space. */
  zero(offsetBytes: number, lengthBytes: number, options: { mayPunch: boolean }): Promise<void>;
  /** `base:allocation` of the range, from its start, at most `extentsMax` runs, clipped to it. */
  blockStatus(offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<Extent[]>;
  /** The connection is done with it (called once, after its last request completed). */
  release(): void;
}

/** The exports a server offers. */
export interface ExportCatalog {
  /** Names for NBD_OPT_LIST. */
  names(): string[];
  /** Opens an export by name; undefined when there is none. */
  open(name: string): NbdExport | undefined;
}
