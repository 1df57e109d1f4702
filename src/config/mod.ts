export { configSchema, type Config } from './schema.js';
export { ConfigError, ENV_OVERRIDES, loadConfig, type LoadOptions } from './load.js';
