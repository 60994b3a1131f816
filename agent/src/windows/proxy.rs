//! The system's proxy settings, through WinHTTP:
//! - `WinHttpGetDefaultProxyConfiguration`: the machine's WinHTTP settings, what
//!   `netsh winhttp show proxy` shows (`netsh winhttp set proxy`, `netsh winhttp import proxy
//!   source=ie` write them); a proxy list and a bypass list, or direct.
//! - `WinHttpGetProxyForUrl`, only when `relay.proxy` asks for it: WPAD auto-detection (DHCP,
//!   then DNS `wpad.<domain>`) for `"auto"`, or the PAC file of `"pac:<url>"`. When that finds
//!   nothing, the WinHTTP settings above apply.
//!
//! Per-user Internet Options (`WinHttpGetIEProxyConfigForCurrentUser`) are not read: a service's
//! account has none, and `agent check` run by an administrator would report a proxy the service
//! never uses. The strings are parsed by the portable [`crate::proxy::list`].
//!
//! Compiled for Windows only; the default configuration call runs under wine in
//! scripts/windows-check.sh, auto-detection only on a real network with WPAD.

#![allow(unsafe_code)]

use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{GetLastError, GlobalFree};
use windows_sys::Win32::Networking::WinHttp::{
    ERROR_WINHTTP_AUTODETECTION_FAILED, ERROR_WINHTTP_UNABLE_TO_DOWNLOAD_SCRIPT,
    WINHTTP_ACCESS_TYPE_NAMED_PROXY, WINHTTP_ACCESS_TYPE_NO_PROXY, WINHTTP_AUTO_DETECT_TYPE_DHCP,
    WINHTTP_AUTO_DETECT_TYPE_DNS_A, WINHTTP_AUTOPROXY_AUTO_DETECT, WINHTTP_AUTOPROXY_CONFIG_URL,
    WINHTTP_AUTOPROXY_OPTIONS, WINHTTP_PROXY_INFO, WinHttpCloseHandle,
    WinHttpGetDefaultProxyConfiguration, WinHttpGetProxyForUrl, WinHttpOpen, WinHttpSetTimeouts,
};

use crate::proxy::{Source, SystemAnswer, SystemMode};

/// Longest a PAC file download may take, per step (resolve, connect, send, receive), in ms.
const PAC_TIMEOUT_MS: i32 = 5_000;

/// What the system says about reaching `url` (`https://relay:443/`). Blocking: call it from
/// `spawn_blocking`.
pub fn lookup(mode: &SystemMode, url: &str) -> SystemAnswer {
    let found = match mode {
        SystemMode::Default => return default_settings(),
        SystemMode::AutoDetect => for_url(url, None),
        SystemMode::Pac(pac) => for_url(url, Some(pac)),
    };
    match found {
        Ok(answer) => answer,
        Err(why) => {
            tracing::info!(%why, "no proxy from auto-configuration; using the WinHTTP settings");
            default_settings()
        }
    }
}

/// The machine's WinHTTP settings. Blocking (but quick: a registry read).
pub fn default_settings() -> SystemAnswer {
    let mut info = WINHTTP_PROXY_INFO::default();
    // SAFETY: `info` is a valid out-structure; on success its strings were allocated by WinHTTP
    // with GlobalAlloc and are freed by `take_strings`.
    let ok = unsafe { WinHttpGetDefaultProxyConfiguration(&mut info) };
    if ok == 0 {
        // SAFETY: reads this thread's last error, right after the failed call.
        let code = unsafe { GetLastError() };
        tracing::warn!(
            code,
            "WinHttpGetDefaultProxyConfiguration failed; connecting without the system proxy"
        );
        return direct(Source::Nothing);
    }
    let (proxies, bypass) = take_strings(&info);
    if info.dwAccessType == WINHTTP_ACCESS_TYPE_NAMED_PROXY && proxies.is_some() {
        SystemAnswer {
            proxies,
            bypass,
            source: Source::WinHttp,
        }
    } else {
        direct(Source::Nothing)
    }
}

/// WPAD (`pac` None) or the PAC file at `pac`, evaluated for `url`.
fn for_url(url: &str, pac: Option<&str>) -> Result<SystemAnswer, String> {
    let agent = wide(concat!("mamut-agent/", env!("CARGO_PKG_VERSION")));
    // SAFETY: `agent` is NUL-terminated and alive for the call; no proxy names are passed (the
    // session only runs the auto-proxy lookup). The handle is closed by `Session`'s Drop.
    let handle = unsafe {
        WinHttpOpen(
            agent.as_ptr(),
            WINHTTP_ACCESS_TYPE_NO_PROXY,
            null(),
            null(),
            0,
        )
    };
    if handle.is_null() {
        return Err(format!("WinHttpOpen failed ({})", last_error()));
    }
    let session = Session(handle);
    // SAFETY: a valid session handle; plain integers.
    unsafe {
        WinHttpSetTimeouts(
            session.0,
            PAC_TIMEOUT_MS,
            PAC_TIMEOUT_MS,
            PAC_TIMEOUT_MS,
            PAC_TIMEOUT_MS,
        )
    };
    let pac_url = pac.map(wide);
    let mut options = WINHTTP_AUTOPROXY_OPTIONS {
        dwFlags: if pac.is_some() {
            WINHTTP_AUTOPROXY_CONFIG_URL
        } else {
            WINHTTP_AUTOPROXY_AUTO_DETECT
        },
        dwAutoDetectFlags: if pac.is_some() {
            0
        } else {
            WINHTTP_AUTO_DETECT_TYPE_DHCP | WINHTTP_AUTO_DETECT_TYPE_DNS_A
        },
        lpszAutoConfigUrl: pac_url.as_ref().map_or(null(), |u| u.as_ptr()),
        lpvReserved: null_mut(),
        dwReserved: 0,
        // The PAC server may want the account's Windows logon.
        fAutoLogonIfChallenged: 1,
    };
    let target = wide(url);
    let mut info = WINHTTP_PROXY_INFO::default();
    // SAFETY: the session handle is open; `target` and the PAC URL (if any) are NUL-terminated
    // and alive for the call; `options` and `info` are valid. On success the strings in `info`
    // were allocated with GlobalAlloc and are freed by `take_strings`.
    let ok = unsafe { WinHttpGetProxyForUrl(session.0, target.as_ptr(), &mut options, &mut info) };
    let source = match pac {
        Some(pac) => Source::Pac(pac.to_owned()),
        None => Source::Wpad,
    };
    if ok == 0 {
        // SAFETY: reads this thread's last error, right after the failed call.
        let code = unsafe { GetLastError() };
        return Err(match code {
            ERROR_WINHTTP_AUTODETECTION_FAILED => "WPAD found no proxy configuration".to_owned(),
            ERROR_WINHTTP_UNABLE_TO_DOWNLOAD_SCRIPT => {
                format!(
                    "the PAC file {} could not be downloaded",
                    pac.unwrap_or("(WPAD's)")
                )
            }
            code => format!("WinHttpGetProxyForUrl failed (error {code})"),
        });
    }
    let (proxies, bypass) = take_strings(&info);
    Ok(if info.dwAccessType == WINHTTP_ACCESS_TYPE_NAMED_PROXY {
        SystemAnswer {
            proxies,
            bypass,
            source,
        }
    } else {
        direct(source)
    })
}

fn direct(source: Source) -> SystemAnswer {
    SystemAnswer {
        proxies: None,
        bypass: None,
        source,
    }
}

/// A WinHTTP session handle, closed on drop.
struct Session(*mut core::ffi::c_void);

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: an open handle from WinHttpOpen, closed once.
        unsafe { WinHttpCloseHandle(self.0) };
    }
}

/// The proxy and bypass strings of `info`, freed.
fn take_strings(info: &WINHTTP_PROXY_INFO) -> (Option<String>, Option<String>) {
    (take(info.lpszProxy), take(info.lpszProxyBypass))
}

/// Copies a NUL-terminated UTF-16 string WinHTTP allocated, and frees it (GlobalFree).
fn take(text: *mut u16) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: WinHTTP returned a NUL-terminated string: every index up to the NUL is inside it.
    let length = unsafe {
        let mut n = 0;
        while *text.add(n) != 0 {
            n += 1;
        }
        n
    };
    // SAFETY: `length` units before the NUL, read before the string is freed.
    let copy = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, length) });
    // SAFETY: allocated by WinHTTP with GlobalAlloc, freed exactly once, not used after.
    unsafe { GlobalFree(text.cast()) };
    Some(copy).filter(|s| !s.trim().is_empty())
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

fn last_error() -> String {
    // SAFETY: reads this thread's last error.
    format!("error {}", unsafe { GetLastError() })
}
