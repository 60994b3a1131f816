//! The Windows Event Log: a tracing layer that writes the events [`crate::logging::event_log_text`]
//! picks (WARN, ERROR, and INFO marked `event_log = true`: "service started", "service stopped")
//! to the Application log under the service's name, and the event source's registration in the
//! registry, which `agent service install` adds and `uninstall` removes.
//!
//! The source's message file is .NET's EventLogMessages.dll, which has the message "%1" for
//! every event id, so each entry shows our one string as it is (no message DLL of our own).
//! Event ids: 1 information, 2 warning, 3 error.
//!
//! A warning that repeats is written at most once per 5 minutes
//! ([`crate::logging::Throttle`]). The event text is the event's message and fields; the agent never logs secrets, so none
//! reach the Event Log either.

// The Win32 calls below need unsafe; each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::ptr;
use std::time::Instant;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Context;
use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, HANDLE};
use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE,
    RegisterEventSourceW, ReportEventW,
};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_LOCAL_MACHINE, KEY_SET_VALUE, REG_DWORD, REG_EXPAND_SZ, REG_OPTION_NON_VOLATILE,
    RegCloseKey, RegCreateKeyExW, RegDeleteKeyW, RegSetValueExW,
};

use crate::logging::{ExtraLayer, Throttle, event_log_text};

/// The message file of the event source: "%1" for every id (ships with .NET Framework 4).
pub const MESSAGE_FILE: &str =
    r"%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll";
/// Error, warning and information (EVENTLOG_ERROR_TYPE | WARNING | INFORMATION).
const TYPES_SUPPORTED: u32 = 7;
const SOURCES_KEY: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application";

/// A NUL-terminated UTF-16 copy of `text`.
fn wide(text: impl AsRef<OsStr>) -> Vec<u16> {
    text.as_ref().encode_wide().chain(Some(0)).collect()
}

fn source_key(source: &str) -> Vec<u16> {
    wide(format!(r"{SOURCES_KEY}\{source}"))
}

/// A registered event source; reports go to the Application log.
#[derive(Debug)]
pub struct EventLog {
    handle: HANDLE,
}

// SAFETY: an event log handle is not tied to the thread that opened it; ReportEventW may be
// called with it from any thread, concurrently (the API serialises writes).
unsafe impl Send for EventLog {}
// SAFETY: see `Send`; `EventLog` has no interior state besides the handle.
unsafe impl Sync for EventLog {}

impl EventLog {
    /// Opens the Application log's source `source` on this computer. Works even when the
    /// source is not registered (entries then show "description not found" around the text).
    pub fn open(source: &str) -> io::Result<Self> {
        let name = wide(source);
        // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; a null
        // server name means the local computer.
        let handle = unsafe { RegisterEventSourceW(ptr::null(), name.as_ptr()) };
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(EventLog { handle })
    }

    /// Writes one entry; a failure is ignored (there is nowhere left to report it).
    pub fn report(&self, level: Level, text: &str) {
        let (kind, id) = match level {
            Level::ERROR => (EVENTLOG_ERROR_TYPE, 3),
            Level::WARN => (EVENTLOG_WARNING_TYPE, 2),
            _ => (EVENTLOG_INFORMATION_TYPE, 1),
        };
        let text = wide(text);
        let strings = [text.as_ptr()];
        // SAFETY: `self.handle` is an open event source handle (closed only in Drop); `strings`
        // holds one pointer to a NUL-terminated UTF-16 string, both alive for the call; no SID
        // and no raw data (null with size 0).
        unsafe {
            ReportEventW(
                self.handle,
                kind,
                0,
                id,
                ptr::null_mut(),
                1,
                0,
                strings.as_ptr(),
                ptr::null(),
            );
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // SAFETY: the handle came from RegisterEventSourceW and is closed once, here.
        unsafe {
            DeregisterEventSource(self.handle);
        }
    }
}

/// Sends the events [`event_log_text`] picks to an [`EventLog`], repeats held back by the
/// [`Throttle`].
#[derive(Debug)]
pub struct EventLogLayer {
    log: EventLog,
    throttle: Throttle,
}

impl<S: Subscriber> Layer<S> for EventLogLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let Some((level, text)) = event_log_text(event) else {
            return;
        };
        let callsite = event.metadata().callsite();
        if let Some(text) = self.throttle.admit(callsite, Instant::now(), text) {
            self.log.report(level, &text);
        }
    }
}

/// The Event Log layer for `source`, filtered to INFO and above (the layer then picks WARN,
/// ERROR and the marked INFO events).
pub fn layer(source: &str) -> io::Result<ExtraLayer> {
    let log = EventLog::open(source)?;
    let layer = EventLogLayer {
        log,
        throttle: Throttle::default(),
    };
    Ok(Box::new(layer.with_filter(LevelFilter::INFO)))
}

/// Registers the event source `source` under the Application log (needs Administrator).
pub fn register_source(source: &str) -> io::Result<()> {
    let key = source_key(source);
    let mut hkey: HKEY = ptr::null_mut();
    // SAFETY: `key` is NUL-terminated UTF-16 alive for the call; `hkey` receives the opened
    // key; no class, no security attributes, no disposition wanted (nulls are allowed).
    let status = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            0,
            ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            ptr::null(),
            &mut hkey,
            ptr::null_mut(),
        )
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    let file = wide(MESSAGE_FILE);
    let file_bytes: Vec<u8> = file.iter().flat_map(|u| u.to_le_bytes()).collect();
    let result = set_value(hkey, "EventMessageFile", REG_EXPAND_SZ, &file_bytes).and_then(|()| {
        set_value(
            hkey,
            "TypesSupported",
            REG_DWORD,
            &TYPES_SUPPORTED.to_le_bytes(),
        )
    });
    // SAFETY: `hkey` was opened above and is closed once.
    unsafe {
        RegCloseKey(hkey);
    }
    result
}

fn set_value(hkey: HKEY, name: &str, kind: u32, data: &[u8]) -> io::Result<()> {
    let name = wide(name);
    let len = u32::try_from(data.len()).map_err(|_| io::Error::other("registry value too long"))?;
    // SAFETY: `hkey` is an open key with KEY_SET_VALUE; `name` is NUL-terminated UTF-16 and
    // `data` holds `len` bytes, both alive for the call.
    let status = unsafe { RegSetValueExW(hkey, name.as_ptr(), 0, kind, data.as_ptr(), len) };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    Ok(())
}

/// Removes the event source `source`; a source that is not registered is no error.
pub fn remove_source(source: &str) -> io::Result<()> {
    let key = source_key(source);
    // SAFETY: `key` is NUL-terminated UTF-16 alive for the call.
    let status = unsafe { RegDeleteKeyW(HKEY_LOCAL_MACHINE, key.as_ptr()) };
    match status {
        0 | ERROR_FILE_NOT_FOUND => Ok(()),
        code => Err(io::Error::from_raw_os_error(code as i32)),
    }
}
