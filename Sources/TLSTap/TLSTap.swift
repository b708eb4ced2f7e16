/// tlstap as a library: `import TLSTap` brings what a program needs to run
/// a capture (`Capture`, its scope and destination), to receive its records
/// (`EventSink`, `DataEvent`, `ConnectionEvent`, `ProtocolRecord`,
/// `HTTPExchange`, `WebSocketMessage`), and tlstap's own sinks and protocol
/// analyzers. README.md's "tlstap as a library" shows a whole program.
@_exported import TLSTapCore
@_exported import TLSTapHTTP
@_exported import TLSTapLoader
@_exported import TLSTapOutput
@_exported import TLSTapSession
