// Public surface of protocol v1: what a client or another node needs to speak it.
export * from './errors.js';
export * from './limits.js';
export * from './subjects.js';
export * from './codec.js';
export * from './record.js';
export * from './requests.js';
export * from './envelope.js';
