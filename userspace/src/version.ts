/** The version of shmr, as `shmr --version`, `shmrctl --version` and the D-Bus Version property say. */
export const SHMR_VERSION = '0.1.0';
