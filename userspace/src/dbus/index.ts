/** dbus: the D-Bus control plane, co.volf.shmr.ShmrFs1 (service and client). See docs/dbus.md. */
export * from './client.js';
export * from './errors.js';
export * from './names.js';
export * from './service.js';
export * from './transport.js';
