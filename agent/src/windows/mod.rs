//! What only Windows has: the service control manager, the Event Log, WinHTTP's proxy settings
//! and SSPI. Compiled on Windows only; everything else in the agent stays portable.
//!
//! Each part is the Windows back-end of one portable module and depends on that module's
//! types, never on another part: [`proxy`] answers [`crate::proxy`]'s system-proxy lookup,
//! [`sspi`] is its Negotiate/NTLM [`crate::proxy::AuthProvider`], [`eventlog`] is a layer
//! for [`crate::logging`], and [`service`] runs [`crate::app`] for the service control
//! manager with [`crate::service`]'s portable parts. The portable module calls its back-end
//! behind `#[cfg(windows)]`; they live here, not inside the module they serve, so that the
//! Windows API calls (the only `unsafe` code in the agent) stay in one place.

pub mod eventlog;
pub mod proxy;
pub mod service;
pub mod sspi;
