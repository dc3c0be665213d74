export { parseSyslog, SyslogParseError } from './parser/syslog.js';
export type { ParseOptions, SyslogMessage, StructuredData, SdParams } from './parser/syslog.js';
export { formatRfc3164, formatRfc5424 } from './parser/format.js';
export { FACILITY_NAMES, SEVERITY_NAMES } from './parser/names.js';
export { SyslogFrameDecoder, FramingError } from './framing/syslog-frame-decoder.js';
export { Agent } from './agent.js';
export { loadConfigFile, parseConfigText, ConfigError } from './config/load.js';
export type { SluiceConfig } from './config/schema.js';
