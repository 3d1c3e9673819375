/** nbd: volumes (block devices stored as shmr files) served over the NBD protocol. */
export * from './attach.js';
export type { ExportCatalog, ExportDescription, NbdExport } from './export.js';
export { NbdServer, type NbdListenOptions } from './server.js';
export { VolumeCatalog } from './volume-catalog.js';
export * from './volumes.js';
