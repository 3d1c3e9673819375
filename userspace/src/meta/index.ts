/** meta: the metadata store (SQLite). The only module that speaks SQL. */
export * from './attributes.js';
export * from './store.js';
