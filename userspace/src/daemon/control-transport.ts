/**
 * How a client reaches a running daemon's control methods. Today the control socket; the D-Bus
 * client will be another implementation of the same interface, so callers (crond, CLI) do not
 * change when the transport does.
 */
import { callControl } from './control.js';

/** Calls one control method of a running daemon. */
export interface ControlTransport {
  /** Resolves with the method's result; rejects with ControlError (errno code) or a socket error. */
  call(method: string, params: Record<string, unknown>, onProgress?: (value: unknown) => void): Promise<unknown>;
}

/** The control socket in `metadataDir`. */
export function socketTransport(metadataDir: string): ControlTransport {
  return { call: (method, params, onProgress) => callControl(metadataDir, method, params, onProgress) };
}
