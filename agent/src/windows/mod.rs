//! What only Windows has: the service control manager, the Event Log, WinHTTP's proxy settings
//! and SSPI. Compiled on Windows only; everything else in the agent stays portable.

pub mod eventlog;
pub mod proxy;
pub mod service;
pub mod sspi;
