//! Proxy authentication as the account the agent runs as: SSPI's `Negotiate` (Kerberos, or NTLM
//! when Kerberos cannot be used) or `NTLM`, giving the tokens of the `Proxy-Authorization`
//! exchange in [`crate::proxy::tunnel`]. The credentials are the process's own (for a service:
//! its account; a virtual account `NT SERVICE\...` or NetworkService authenticates on the network
//! as the computer, `DOMAIN\HOST$`); the target is `HTTP/<proxy host>`.
//!
//! Compiled for Windows only and not run by any test here (wine has no domain to log on to):
//! the exchange around it is tested on Linux with a fake authenticator.

#![allow(unsafe_code)]

use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{
    SEC_E_OK, SEC_I_COMPLETE_AND_CONTINUE, SEC_I_COMPLETE_NEEDED, SEC_I_CONTINUE_NEEDED,
};
use windows_sys::Win32::Security::Authentication::Identity::{
    AcquireCredentialsHandleW, CompleteAuthToken, DeleteSecurityContext, FreeContextBuffer,
    FreeCredentialsHandle, ISC_REQ_ALLOCATE_MEMORY, ISC_REQ_CONNECTION, InitializeSecurityContextW,
    SECBUFFER_TOKEN, SECBUFFER_VERSION, SECPKG_CRED_OUTBOUND, SECURITY_NATIVE_DREP, SecBuffer,
    SecBufferDesc,
};
use windows_sys::Win32::Security::Credentials::SecHandle;

use crate::proxy::{AuthProvider, ProxyAuthenticator};

/// Makes an SSPI context for `Negotiate` when the proxy offers it, else for `NTLM`.
pub struct Sspi;

impl AuthProvider for Sspi {
    fn authenticator(
        &self,
        proxy_host: &str,
        offered: &[String],
    ) -> Result<Option<Box<dyn ProxyAuthenticator>>, String> {
        let offers = |scheme: &str| offered.iter().any(|s| s.eq_ignore_ascii_case(scheme));
        let scheme = if offers("Negotiate") {
            "Negotiate"
        } else if offers("NTLM") {
            "NTLM"
        } else {
            return Ok(None);
        };
        Ok(Some(Box::new(Context::new(scheme, proxy_host)?)))
    }
}

/// One exchange: the credentials handle and, after the first step, the security context.
struct Context {
    scheme: &'static str,
    /// `HTTP/<proxy host>`, for errors.
    spn: String,
    /// `spn`, NUL-terminated UTF-16.
    target: Vec<u16>,
    credentials: SecHandle,
    context: Option<SecHandle>,
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

impl Context {
    fn new(scheme: &'static str, proxy_host: &str) -> Result<Self, String> {
        let package = wide(scheme);
        let mut credentials = SecHandle::default();
        let mut expiry = 0i64;
        // SAFETY: `package` is a NUL-terminated UTF-16 string alive for the call; principal,
        // logon id, auth data and key function are null/None, which means the current
        // credentials of this process's account; `credentials` and `expiry` are valid
        // out-pointers. On success the handle is freed once, in Drop.
        let status = unsafe {
            AcquireCredentialsHandleW(
                null(),
                package.as_ptr(),
                SECPKG_CRED_OUTBOUND,
                null(),
                null(),
                None,
                null(),
                &mut credentials,
                &mut expiry,
            )
        };
        if status != SEC_E_OK {
            return Err(format!(
                "SSPI has no {scheme} credentials for the account the agent runs as ({})",
                describe(status)
            ));
        }
        let spn = format!("HTTP/{proxy_host}");
        Ok(Self {
            scheme,
            target: wide(&spn),
            spn,
            credentials,
            context: None,
        })
    }
}

impl ProxyAuthenticator for Context {
    fn scheme(&self) -> &str {
        self.scheme
    }

    fn step(&mut self, challenge: Option<&[u8]>) -> Result<Vec<u8>, String> {
        // SSPI takes a mutable pointer even for input; it gets its own copy.
        let mut challenge = challenge.map(<[u8]>::to_vec);
        let mut input_buffer = SecBuffer {
            cbBuffer: 0,
            BufferType: SECBUFFER_TOKEN,
            pvBuffer: null_mut(),
        };
        if let Some(bytes) = &mut challenge {
            input_buffer.cbBuffer =
                u32::try_from(bytes.len()).map_err(|_| "the proxy's challenge is too large")?;
            input_buffer.pvBuffer = bytes.as_mut_ptr().cast();
        }
        let input = SecBufferDesc {
            ulVersion: SECBUFFER_VERSION,
            cBuffers: 1,
            pBuffers: &mut input_buffer,
        };
        let mut output_buffer = SecBuffer {
            cbBuffer: 0,
            BufferType: SECBUFFER_TOKEN,
            pvBuffer: null_mut(),
        };
        let mut output = SecBufferDesc {
            ulVersion: SECBUFFER_VERSION,
            cBuffers: 1,
            pBuffers: &mut output_buffer,
        };
        let mut new_context = SecHandle::default();
        let mut attributes = 0u32;
        let mut expiry = 0i64;
        let current: *const SecHandle = self.context.as_ref().map_or(null(), |c| c as *const _);
        let input_ptr: *const SecBufferDesc = if challenge.is_some() { &input } else { null() };
        // SAFETY: every pointer is valid for the call: the credentials handle from
        // AcquireCredentialsHandleW (alive until Drop), the current context or null on the first
        // step, the NUL-terminated target, the input descriptor pointing at `input_buffer` and
        // the challenge copy (both alive until the end of this function) or null, and the
        // out-parameters. ISC_REQ_ALLOCATE_MEMORY makes SSPI allocate the output token, freed
        // below with FreeContextBuffer.
        let status = unsafe {
            InitializeSecurityContextW(
                &self.credentials,
                current,
                self.target.as_ptr(),
                ISC_REQ_CONNECTION | ISC_REQ_ALLOCATE_MEMORY,
                0,
                SECURITY_NATIVE_DREP,
                input_ptr,
                0,
                &mut new_context,
                &mut output,
                &mut attributes,
                &mut expiry,
            )
        };
        let succeeded = matches!(
            status,
            SEC_E_OK | SEC_I_CONTINUE_NEEDED | SEC_I_COMPLETE_NEEDED | SEC_I_COMPLETE_AND_CONTINUE
        );
        if succeeded && self.context.is_none() {
            // From now on the context exists and is deleted in Drop.
            self.context = Some(new_context);
        }
        let mut completed = SEC_E_OK;
        if matches!(status, SEC_I_COMPLETE_NEEDED | SEC_I_COMPLETE_AND_CONTINUE) {
            // SAFETY: the context was just made by InitializeSecurityContextW and `output`
            // describes the token it returned, not yet freed.
            completed = unsafe { CompleteAuthToken(&new_context, &output) };
        }
        let token = take(&output_buffer);
        if !succeeded {
            return Err(format!(
                "SSPI {} for {} failed ({})",
                self.scheme,
                self.spn,
                describe(status)
            ));
        }
        if completed != SEC_E_OK {
            return Err(format!(
                "SSPI could not complete the {} token ({})",
                self.scheme,
                describe(completed)
            ));
        }
        Ok(token)
    }
}

/// Copies the token SSPI allocated and frees it.
fn take(buffer: &SecBuffer) -> Vec<u8> {
    if buffer.pvBuffer.is_null() {
        return Vec::new();
    }
    let length = usize::try_from(buffer.cbBuffer).unwrap_or(0);
    // SAFETY: SSPI allocated (ISC_REQ_ALLOCATE_MEMORY) `cbBuffer` bytes at `pvBuffer`; they are
    // read once here, before the buffer is freed.
    let token =
        unsafe { std::slice::from_raw_parts(buffer.pvBuffer.cast::<u8>(), length) }.to_vec();
    // SAFETY: the buffer came from SSPI and is freed exactly once; it is not used after.
    unsafe { FreeContextBuffer(buffer.pvBuffer) };
    token
}

impl Drop for Context {
    fn drop(&mut self) {
        if let Some(context) = &self.context {
            // SAFETY: a context InitializeSecurityContextW made, deleted once.
            unsafe { DeleteSecurityContext(context) };
        }
        // SAFETY: the handle AcquireCredentialsHandleW gave, freed once.
        unsafe { FreeCredentialsHandle(&self.credentials) };
    }
}

/// An SSPI status with its name where it is one an operator meets.
fn describe(status: i32) -> String {
    let name = match status as u32 {
        0x8009_030E => "SEC_E_NO_CREDENTIALS: the account has no network credentials",
        0x8009_030C => "SEC_E_LOGON_DENIED",
        0x8009_0303 => "SEC_E_TARGET_UNKNOWN: no SPN HTTP/<proxy host> in the domain",
        0x8009_0322 => "SEC_E_WRONG_PRINCIPAL",
        0x8009_0308 => "SEC_E_INVALID_TOKEN: the proxy's challenge was not understood",
        0x8009_0305 => "SEC_E_SECPKG_NOT_FOUND",
        0x8009_0311 => "SEC_E_NO_AUTHENTICATING_AUTHORITY: no domain controller reachable",
        _ => "",
    };
    if name.is_empty() {
        format!("0x{:08X}", status as u32)
    } else {
        format!("0x{:08X} {name}", status as u32)
    }
}
