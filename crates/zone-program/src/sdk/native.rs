//! The native backend: the vendor zone SDK through the C ABI shim (`native/shim/zone_shim.h`),
//! loaded at start-up with `libloading`. This module holds the crate's only `unsafe` code.
//!
//! **Loading.** [`NativeSdk::load`] opens `sdk.native.library` (`RTLD_NOW`, and `RTLD_NODELETE`
//! because the vendor SDK may run threads of its own: the library is never unloaded), resolves every
//! symbol up front and checks the ABI version, then creates the shim context with the opaque
//! `sdk.native.init_options`. Any failure is a [`LoadError`] naming the path (and the missing symbol);
//! the program then refuses to start. Nothing falls back to another backend.
//!
//! **Ownership.** Every object the shim hands out has one Rust owner whose `Drop` calls the shim's own
//! free function: [`Shim`] (the context), [`Request`] (the vendor decoder plus the headers and body
//! it refers to), [`OwnedReply`] and [`ShimString`]. Rust-owned strings cross as (pointer, length) and
//! are only borrowed for the duration of a call.
//!
//! **Thread model.** The shim context is shared by all threads (`zone_shim.h` makes the functions
//! taking a `const zone_shim *` thread-safe). A [`Request`] is used by one thread at a time but may
//! move between threads, between `decode` and the reply (as the Java SDK's decoder moves from the IO
//! thread to a business thread). Each `invoke` creates and destroys its own vendor `SpecSDK` object
//! inside the shim, on a thread of tokio's blocking pool, bounded by [`InvokeLimiter::run_blocking`].
//! The thread-safety of vendor objects is undocumented, and SDK builds before 2024-12-27 had a
//! network-handle limit under multithreading: `sdk.native.max_concurrent_calls` caps every call into
//! the vendor SDK (decode, reply, request release, invoke, notify id) to N at once through a
//! [`VendorGate`] (1 serialises them); the HTTP layer then decodes and builds replies on the blocking
//! pool ([`ZoneSdk::may_block`]), never on the async workers. Log lines are not gated.
//!
//! **Codes.** Decode failures are the shim's codes (−20000…−20003 from the vendor decoder) or this
//! module's own: [`DECODE_NOT_UTF8`] and [`DECODE_BAD_CALL_TYPE`]. The vendor SDK still builds a
//! reply, which travels in [`DecodeError::reply`]: from `""` when the request was refused, and for a
//! verified request whose `call_type` is neither 1 nor 2 an error output (900010, with a warning),
//! so the zone gets an answer it can decrypt. Every other shim code becomes an [`SdkError`] in
//! [`sdk_error`].
#![expect(unsafe_code, reason = "the FFI boundary to the C ABI shim: the crate's only unsafe code")]

use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Condvar, Mutex};

use async_trait::async_trait;
use libloading::os::unix::Library;
use secrecy::{ExposeSecret, SecretString};

use super::native_log::{SdkLog, SdkLogLevel};
use super::pool::InvokeLimiter;
use super::{CallContext, CallType, Callback, DecodeError, Decoded, Reply, ReplyBuilder, SdkError, ZoneSdk};
use crate::config::SdkConfig;
use crate::error::{AppError, ErrorCode};

/// The shim ABI version this program speaks (`ZONE_SHIM_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;
/// Decode code: a decoded field is not UTF-8 (the program's own, not the vendor's).
pub const DECODE_NOT_UTF8: i32 = -19010;
/// Decode code: `call_type` is neither 1 nor 2 (the program's own, not the vendor's).
pub const DECODE_BAD_CALL_TYPE: i32 = -19011;

const OK: i32 = 0;
const E_ARGUMENT: i32 = -19001;
const E_EXCEPTION: i32 = -19002;
const E_NO_MEMORY: i32 = -19003;
const E_INIT: i32 = -19004;
const E_UNSUPPORTED: i32 = -19006;
const RET_EMPTY_RESPONSE: i32 = -10007;
/// `RTLD_NODELETE` (glibc and musl): keep the library mapped after the last handle closes.
const RTLD_NODELETE: std::ffi::c_int = 0x1000;

/// Why the native backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The library could not be opened (missing file, wrong architecture, unresolved dependency).
    #[error("cannot load the native SDK shim {path}: {source}")]
    Open {
        /// The configured path.
        path: PathBuf,
        /// The loader's reason.
        source: libloading::Error,
    },
    /// The library lacks a function of the shim ABI.
    #[error("the native SDK shim {path} lacks the symbol {symbol}: is it native/build/libzone_shim.so?")]
    Symbol {
        /// The configured path.
        path: PathBuf,
        /// The missing symbol.
        symbol: &'static str,
    },
    /// The shim speaks another ABI version.
    #[error("the native SDK shim {path} has ABI version {found}, this program needs {ABI_VERSION}; rebuild it")]
    AbiVersion {
        /// The configured path.
        path: PathBuf,
        /// The shim's version.
        found: u32,
    },
    /// The SDK refused to initialise (e.g. invalid `sdk.native.init_options`).
    #[error("the native SDK shim {path} refused to start (code {code}): {reason}")]
    Init {
        /// The configured path.
        path: PathBuf,
        /// The shim code.
        code: i32,
        /// The shim's reason (never an option value).
        reason: String,
    },
    /// `SpecOpenDebugMode` returned false (shim code −19005) or failed.
    #[error(
        "the vendor SDK refused to open debug mode (code {0}); check the debug token (valid 3 days) and the app access_token (about 2 hours)"
    )]
    DebugMode(i32),
}

/// Maps a non-zero shim or vendor code of `op` (an API name or a shim operation) to an [`SdkError`].
pub fn sdk_error(code: i32, op: &str) -> SdkError {
    match code {
        E_ARGUMENT => SdkError::Unavailable(format!("native shim: invalid argument in {op}")),
        E_EXCEPTION => SdkError::Unavailable(format!("native shim: the SDK threw in {op}")),
        E_NO_MEMORY => SdkError::Unavailable(format!("native shim: out of memory in {op}")),
        E_INIT => SdkError::Unavailable(format!("native shim: the SDK is not initialised ({op})")),
        ret => SdkError::Invoke { api: op.to_owned(), ret },
    }
}

/// The vendor SDK behind the shim, as a [`ZoneSdk`].
pub struct NativeSdk {
    shim: Arc<Shim>,
    limiter: InvokeLimiter,
    max_response_bytes: usize,
}

impl NativeSdk {
    /// Loads the shim named by `sdk.native.library` and starts the SDK with `sdk.native.init_options`.
    /// `invoke` runs on the blocking pool bounded by `limiter`.
    pub fn load(config: &SdkConfig, limiter: InvokeLimiter) -> Result<Self, LoadError> {
        let mut shim = Shim::load(&config.native.library, config.native.init_options.expose_secret())?;
        shim.gate = VendorGate::new(config.native.max_concurrent_calls);
        Ok(Self { shim: Arc::new(shim), limiter, max_response_bytes: config.max_response_bytes })
    }

    /// The vendor SDK's version text (`GetSDKVersion`), when the library exposes one.
    pub fn sdk_version(&self) -> Option<String> {
        let f = self.shim.api.sdk_version?;
        let mut out = ShimString::empty(&self.shim);
        // SAFETY: the context is live; the out pointers are owned by `out`, whose Drop frees.
        let code = unsafe { f(self.shim.ctx.as_ptr(), &mut out.ptr, &mut out.len) };
        if code != OK {
            if code != E_UNSUPPORTED {
                tracing::warn!(code, "the vendor SDK's version could not be read");
            }
            return None;
        }
        Some(String::from_utf8_lossy(out.bytes()).into_owned())
    }

    /// How the shim was built (`sdk=…;invoke=…;log=…`), when it says.
    pub fn build_info(&self) -> Option<String> {
        let f = self.shim.api.build_info?;
        // SAFETY: a getter without arguments returning a static NUL-terminated string (or null).
        let p = unsafe { f() };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null: a static NUL-terminated string of the loaded (never unloaded) library.
        Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// The most vendor calls that ran at once so far (0 without `sdk.native.max_concurrent_calls`).
    pub fn peak_concurrent_calls(&self) -> usize {
        self.shim.gate.as_ref().map_or(0, VendorGate::peak)
    }

    /// Opens the vendor debug mode (WeCom doc 101390): the program then serves a zone that forwards
    /// to this server.
    pub fn open_debug_mode(&self, debug_token: &SecretString, access_token: &SecretString) -> Result<(), LoadError> {
        let debug = debug_token.expose_secret().as_bytes();
        let access = access_token.expose_secret().as_bytes();
        // SAFETY: the context is live (owned by `self.shim`); both strings are borrowed for the call.
        let code =
            unsafe { (self.shim.api.open_debug_mode)(self.shim.ctx.as_ptr(), RawStr::of(debug), RawStr::of(access)) };
        match code {
            OK => Ok(()),
            code => Err(LoadError::DebugMode(code)),
        }
    }

    /// A sink writing to the SDK's log functions, for [`super::native_log`].
    pub fn log_sink(&self) -> Arc<dyn SdkLog> {
        self.shim.clone()
    }

    /// Objects and strings the shim has handed out and not yet had back, process-wide (leak checks).
    pub fn live_objects(&self) -> u64 {
        // SAFETY: a plain getter without arguments.
        unsafe { (self.shim.api.live_objects)() }
    }
}

#[async_trait]
impl ZoneSdk for NativeSdk {
    fn decode(&self, method: &str, headers: &[(String, String)], body: &[u8]) -> Result<Decoded, DecodeError> {
        let (code, request) = self.shim.decode(method, headers, body);
        let Some(request) = request else {
            return Err(DecodeError { code, reply: None });
        };
        let refuse = |code: i32, request: Request| DecodeError { code, reply: request.reply(b"").ok() };
        if code != OK {
            return Err(refuse(code, request));
        }
        let callback = match request.callback() {
            Ok(callback) => callback,
            Err((DECODE_BAD_CALL_TYPE, call_type)) => {
                // Verified, but of a kind this program does not know: answer it (an error output
                // the zone can decrypt) rather than refuse it, and say so.
                tracing::warn!(call_type, "the SDK decoded a call_type other than 1 or 2; answered with 900010");
                let output = AppError::Code(ErrorCode::UnsupportedCallType).to_reply_json().to_string();
                return Err(DecodeError { code: DECODE_BAD_CALL_TYPE, reply: request.reply(output.as_bytes()).ok() });
            }
            Err((code, _)) => return Err(refuse(code, request)),
        };
        let reply = ReplyBuilder::new(move |plaintext| request.reply(plaintext.as_bytes()));
        Ok(Decoded { callback, reply })
    }

    async fn invoke(&self, ctx: &CallContext, api: &str, request_json: &str) -> Result<String, SdkError> {
        let (shim, max) = (self.shim.clone(), self.max_response_bytes);
        let (ctx, api, request) = (ctx.clone(), api.to_owned(), request_json.to_owned());
        self.limiter.run_blocking(move || shim.invoke(&ctx, &api, &request, max)).await
    }

    fn may_block(&self) -> bool {
        self.shim.gate.is_some()
    }

    fn native_notify_ids(&self) -> bool {
        true
    }

    fn generate_notify_id(&self) -> Result<String, SdkError> {
        let _pass = self.shim.enter();
        let mut out = ShimString::empty(&self.shim);
        // SAFETY: the context is live; the out pointers are valid and owned by `out`, whose Drop frees.
        let code = unsafe { (self.shim.api.generate_notify_id)(self.shim.ctx.as_ptr(), &mut out.ptr, &mut out.len) };
        if code != OK {
            return Err(sdk_error(code, "GenerateNotifyId"));
        }
        String::from_utf8(out.bytes().to_vec()).map_err(|_| SdkError::BadResponse)
    }
}

/// A borrowed byte string crossing the boundary (`zone_shim_str`).
#[repr(C)]
#[derive(Clone, Copy)]
struct RawStr {
    ptr: *const c_char,
    len: usize,
}

impl RawStr {
    fn of(bytes: &[u8]) -> Self {
        Self { ptr: bytes.as_ptr().cast(), len: bytes.len() }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid and unchanged for `'a` (or `len` is 0).
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
    }
}

#[repr(C)]
struct RawHeader {
    name: RawStr,
    value: RawStr,
}

#[repr(C)]
struct RawCallback {
    corp_id: RawStr,
    job_info: RawStr,
    ability_id: RawStr,
    notify_id: RawStr,
    data: RawStr,
    agent_id: i64,
    call_type: i64,
    is_async: i32,
}

#[repr(C)]
struct RawReplyView {
    headers: *const RawHeader,
    header_count: usize,
    body: RawStr,
}

#[repr(C)]
struct RawInvokeArgs {
    corp_id: RawStr,
    agent_id: i64,
    ability_id: RawStr,
    job_info: RawStr,
    api: RawStr,
    request: RawStr,
}

/// Opaque shim types: only ever behind pointers.
#[repr(C)]
struct RawShim {
    _opaque: [u8; 0],
}
#[repr(C)]
struct RawRequest {
    _opaque: [u8; 0],
}
#[repr(C)]
struct RawReply {
    _opaque: [u8; 0],
}

/// The shim's functions, resolved once at load. The pointers stay valid because [`Shim`] keeps the
/// library open (and it is never unloaded).
struct Api {
    abi_version: unsafe extern "C" fn() -> u32,
    live_objects: unsafe extern "C" fn() -> u64,
    new: unsafe extern "C" fn(RawStr, *mut *mut RawShim, *mut *mut c_char, *mut usize) -> i32,
    free: unsafe extern "C" fn(*mut RawShim),
    string_free: unsafe extern "C" fn(*mut c_char),
    decode: unsafe extern "C" fn(*const RawShim, RawStr, *const RawHeader, usize, RawStr, *mut *mut RawRequest) -> i32,
    request_callback: unsafe extern "C" fn(*const RawRequest, *mut RawCallback) -> i32,
    request_reply: unsafe extern "C" fn(*mut RawRequest, RawStr, *mut *mut RawReply) -> i32,
    request_free: unsafe extern "C" fn(*mut RawRequest),
    reply_parts: unsafe extern "C" fn(*const RawReply, *mut RawReplyView) -> i32,
    reply_free: unsafe extern "C" fn(*mut RawReply),
    invoke: unsafe extern "C" fn(*const RawShim, *const RawInvokeArgs, *mut *mut c_char, *mut usize) -> i32,
    generate_notify_id: unsafe extern "C" fn(*const RawShim, *mut *mut c_char, *mut usize) -> i32,
    open_debug_mode: unsafe extern "C" fn(*const RawShim, RawStr, RawStr) -> i32,
    log: unsafe extern "C" fn(*const RawShim, i32, RawStr, RawStr),
    /// Optional (newer shims): `zone_shim_sdk_version`.
    sdk_version: Option<unsafe extern "C" fn(*const RawShim, *mut *mut c_char, *mut usize) -> i32>,
    /// Optional (newer shims): `zone_shim_build_info`.
    build_info: Option<unsafe extern "C" fn() -> *const c_char>,
}

impl Api {
    fn resolve(lib: &Library, path: &Path) -> Result<Self, LoadError> {
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: the symbol is declared in zone_shim.h with exactly the type of the field it
                // fills; the fn pointer is copied out and stays valid while the library is loaded.
                let found = unsafe { lib.get(concat!($name, "\0").as_bytes()) };
                *found.map_err(|_| LoadError::Symbol { path: path.to_owned(), symbol: $name })?
            }};
        }
        Ok(Self {
            abi_version: sym!("zone_shim_abi_version"),
            live_objects: sym!("zone_shim_live_objects"),
            new: sym!("zone_shim_new"),
            free: sym!("zone_shim_free"),
            string_free: sym!("zone_shim_string_free"),
            decode: sym!("zone_shim_decode"),
            request_callback: sym!("zone_shim_request_callback"),
            request_reply: sym!("zone_shim_request_reply"),
            request_free: sym!("zone_shim_request_free"),
            reply_parts: sym!("zone_shim_reply_parts"),
            reply_free: sym!("zone_shim_reply_free"),
            invoke: sym!("zone_shim_invoke"),
            generate_notify_id: sym!("zone_shim_generate_notify_id"),
            open_debug_mode: sym!("zone_shim_open_debug_mode"),
            log: sym!("zone_shim_log"),
            // SAFETY: declared in zone_shim.h with exactly these types; absent in older shims.
            sdk_version: unsafe { lib.get(b"zone_shim_sdk_version\0") }.ok().map(|f| *f),
            // SAFETY: as above.
            build_info: unsafe { lib.get(b"zone_shim_build_info\0") }.ok().map(|f| *f),
        })
    }
}

/// The loaded library and the shim context (`zone_shim *`) of one backend instance.
struct Shim {
    api: Api,
    ctx: NonNull<RawShim>,
    gate: Option<VendorGate>,
    _lib: Library,
}

// SAFETY: zone_shim.h makes every function taking a `const zone_shim *` safe to call from any number
// of threads at once; the context is freed only in Drop, when no other reference exists.
unsafe impl Send for Shim {}
// SAFETY: as above.
unsafe impl Sync for Shim {}

impl Drop for Shim {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from zone_shim_new and is freed exactly once, here. Every Request holds an
        // Arc<Shim>, so none outlives the context.
        unsafe { (self.api.free)(self.ctx.as_ptr()) }
    }
}

impl Shim {
    fn load(path: &Path, options: &str) -> Result<Self, LoadError> {
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL | RTLD_NODELETE;
        // SAFETY: loading runs the library's initialisers; the configured shim is trusted code of
        // this deployment (the only library the program loads).
        let lib = unsafe { Library::open(Some(path), flags) }
            .map_err(|source| LoadError::Open { path: path.to_owned(), source })?;
        let api = Api::resolve(&lib, path)?;
        // SAFETY: a plain getter without arguments.
        let found = unsafe { (api.abi_version)() };
        if found != ABI_VERSION {
            return Err(LoadError::AbiVersion { path: path.to_owned(), found });
        }
        let mut ctx = ptr::null_mut();
        let (mut err_ptr, mut err_len) = (ptr::null_mut(), 0usize);
        // SAFETY: `options` is borrowed for the call; the out pointers are valid locals.
        let code = unsafe { (api.new)(RawStr::of(options.as_bytes()), &mut ctx, &mut err_ptr, &mut err_len) };
        // SAFETY: a non-null error is a shim string of `err_len` bytes, ours to free (once, here).
        let reason = unsafe {
            let text = String::from_utf8_lossy(RawStr { ptr: err_ptr, len: err_len }.bytes()).into_owned();
            (api.string_free)(err_ptr);
            text
        };
        match NonNull::new(ctx) {
            Some(ctx) if code == OK => Ok(Self { api, ctx, gate: None, _lib: lib }),
            _ => Err(LoadError::Init { path: path.to_owned(), code, reason }),
        }
    }

    /// A pass through the vendor gate (nothing without `sdk.native.max_concurrent_calls`).
    fn enter(&self) -> Option<GatePass<'_>> {
        self.gate.as_ref().map(VendorGate::enter)
    }

    /// Runs the vendor decoder. The request comes back whenever the decoder was constructed.
    fn decode(self: &Arc<Self>, method: &str, headers: &[(String, String)], body: &[u8]) -> (i32, Option<Request>) {
        let _pass = self.enter();
        let raw_headers: Vec<RawHeader> = headers
            .iter()
            .map(|(k, v)| RawHeader { name: RawStr::of(k.as_bytes()), value: RawStr::of(v.as_bytes()) })
            .collect();
        let mut out = ptr::null_mut();
        // SAFETY: the context is live; method, headers and body are borrowed for the call (the shim
        // copies them into the request); `out` is a valid local.
        let code = unsafe {
            (self.api.decode)(
                self.ctx.as_ptr(),
                RawStr::of(method.as_bytes()),
                raw_headers.as_ptr(),
                raw_headers.len(),
                RawStr::of(body),
                &mut out,
            )
        };
        (code, NonNull::new(out).map(|raw| Request { shim: self.clone(), raw }))
    }

    fn invoke(&self, ctx: &CallContext, api: &str, request: &str, max_bytes: usize) -> Result<String, SdkError> {
        let args = RawInvokeArgs {
            corp_id: RawStr::of(ctx.corp_id.as_bytes()),
            agent_id: ctx.agent_id,
            ability_id: RawStr::of(ctx.ability_id.as_bytes()),
            job_info: RawStr::of(ctx.job_info.as_bytes()),
            api: RawStr::of(api.as_bytes()),
            request: RawStr::of(request.as_bytes()),
        };
        let mut out = ShimString::empty(self);
        let pass = self.enter();
        // SAFETY: the context is live; `args` and the strings it points to are borrowed for the call;
        // the out pointers are owned by `out`, whose Drop frees what the shim allocates.
        let ret = unsafe { (self.api.invoke)(self.ctx.as_ptr(), &args, &mut out.ptr, &mut out.len) };
        drop(pass);
        if ret != OK {
            return Err(sdk_error(ret, api));
        }
        if out.len == 0 {
            return Err(SdkError::Invoke { api: api.to_owned(), ret: RET_EMPTY_RESPONSE });
        }
        if out.len > max_bytes {
            return Err(SdkError::BadResponse);
        }
        String::from_utf8(out.bytes().to_vec()).map_err(|_| SdkError::BadResponse)
    }
}

impl SdkLog for Shim {
    fn write(&self, level: SdkLogLevel, reqid: &str, line: &str) {
        let level = match level {
            SdkLogLevel::Err => 1,
            SdkLogLevel::Info => 2,
            SdkLogLevel::Dbg => 3,
        };
        // SAFETY: the context is live; both strings are borrowed for the call.
        unsafe { (self.api.log)(self.ctx.as_ptr(), level, RawStr::of(reqid.as_bytes()), RawStr::of(line.as_bytes())) }
    }
}

/// One inbound request inside the shim: the vendor decoder and the headers and body it refers to.
struct Request {
    shim: Arc<Shim>,
    raw: NonNull<RawRequest>,
}

// SAFETY: zone_shim.h: a request is used by one thread at a time and may move between threads. It is
// not Sync, so `&Request` never reaches two threads.
unsafe impl Send for Request {}

impl Drop for Request {
    fn drop(&mut self) {
        let _pass = self.shim.enter();
        // SAFETY: `raw` came from zone_shim_decode and is freed exactly once, here, while the context
        // it refers to is kept alive by `self.shim`.
        unsafe { (self.shim.api.request_free)(self.raw.as_ptr()) }
    }
}

impl Request {
    /// Copies the decoded fields out; a decode code (and the raw `call_type`) when they are not what
    /// the program accepts.
    fn callback(&self) -> Result<Callback, (i32, i64)> {
        let mut raw = RawCallback {
            corp_id: RawStr::of(b""),
            job_info: RawStr::of(b""),
            ability_id: RawStr::of(b""),
            notify_id: RawStr::of(b""),
            data: RawStr::of(b""),
            agent_id: 0,
            call_type: 0,
            is_async: 0,
        };
        // SAFETY: `raw` is a valid out struct; the request is live.
        let code = unsafe { (self.shim.api.request_callback)(self.raw.as_ptr(), &mut raw) };
        if code != OK {
            return Err((code, raw.call_type));
        }
        // SAFETY: the views point into the request, which lives (unchanged) until we drop it.
        let text = |s: RawStr| String::from_utf8(unsafe { s.bytes() }.to_vec()).map_err(|_| (DECODE_NOT_UTF8, 0));
        Ok(Callback {
            corp_id: text(raw.corp_id)?,
            agent_id: raw.agent_id,
            call_type: CallType::try_from(raw.call_type).map_err(|_| (DECODE_BAD_CALL_TYPE, raw.call_type))?,
            is_async: raw.is_async != 0,
            job_info: text(raw.job_info)?,
            ability_id: text(raw.ability_id)?,
            notify_id: text(raw.notify_id)?,
            data: text(raw.data)?,
        })
    }

    /// Builds the reply with this request's decoder.
    fn reply(&self, plaintext: &[u8]) -> Result<Reply, SdkError> {
        let mut raw = ptr::null_mut();
        let _pass = self.shim.enter();
        // SAFETY: the request is live and used by this thread only; `plaintext` is borrowed for the call.
        let code = unsafe { (self.shim.api.request_reply)(self.raw.as_ptr(), RawStr::of(plaintext), &mut raw) };
        let Some(raw) = NonNull::new(raw).filter(|_| code == OK) else {
            return Err(sdk_error(if code == OK { E_EXCEPTION } else { code }, "BuildResponseHeaderBody"));
        };
        let reply = OwnedReply { shim: &self.shim, raw };
        let mut view = RawReplyView { headers: ptr::null(), header_count: 0, body: RawStr::of(b"") };
        // SAFETY: the reply is live; `view` is a valid out struct.
        let code = unsafe { (self.shim.api.reply_parts)(reply.raw.as_ptr(), &mut view) };
        if code != OK {
            return Err(sdk_error(code, "GetResponseHeaders"));
        }
        let headers: &[RawHeader] = if view.header_count == 0 || view.headers.is_null() {
            &[]
        } else {
            // SAFETY: the shim's reply holds `header_count` headers, alive until `reply` drops.
            unsafe { std::slice::from_raw_parts(view.headers, view.header_count) }
        };
        // SAFETY: every view points into the reply, alive until `reply` drops at the end of this scope.
        let text = |s: RawStr| String::from_utf8(unsafe { s.bytes() }.to_vec()).map_err(|_| SdkError::BadResponse);
        let headers = headers.iter().map(|h| Ok((text(h.name)?, text(h.value)?))).collect::<Result<_, SdkError>>()?;
        // SAFETY: as above.
        let body = unsafe { view.body.bytes() }.to_vec();
        Ok(Reply { headers, body })
    }
}

/// A reply built by the shim, freed on drop.
struct OwnedReply<'a> {
    shim: &'a Shim,
    raw: NonNull<RawReply>,
}

impl Drop for OwnedReply<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` came from zone_shim_request_reply and is freed exactly once, here.
        unsafe { (self.shim.api.reply_free)(self.raw.as_ptr()) }
    }
}

/// A string the shim allocated (filled through out pointers), freed on drop.
struct ShimString<'a> {
    shim: &'a Shim,
    ptr: *mut c_char,
    len: usize,
}

impl<'a> ShimString<'a> {
    fn empty(shim: &'a Shim) -> Self {
        Self { shim, ptr: ptr::null_mut(), len: 0 }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the shim filled `ptr`/`len` with a buffer it owns until we free it in Drop (or left
        // them null/0).
        unsafe { RawStr { ptr: self.ptr, len: self.len }.bytes() }
    }
}

impl Drop for ShimString<'_> {
    fn drop(&mut self) {
        // SAFETY: a shim string is freed exactly once, with the shim's own free; null is ignored.
        unsafe { (self.shim.api.string_free)(self.ptr) }
    }
}

/// Caps the calls into the vendor SDK that run at once (`sdk.native.max_concurrent_calls`): a
/// counting semaphore for blocking threads, which also remembers the peak (for tests and metrics).
struct VendorGate {
    limit: usize,
    state: Mutex<GateState>,
    freed: Condvar,
}

#[derive(Default)]
struct GateState {
    running: usize,
    peak: usize,
}

/// One call's pass through the gate; leaving the scope lets the next call in.
struct GatePass<'a>(&'a VendorGate);

impl VendorGate {
    /// A gate of `limit` calls; none for 0 (no cap beyond `sdk.pool_size`).
    fn new(limit: usize) -> Option<Self> {
        (limit > 0).then(|| Self { limit, state: Mutex::new(GateState::default()), freed: Condvar::new() })
    }

    /// Blocks the calling thread until fewer than `limit` calls run.
    fn enter(&self) -> GatePass<'_> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.running >= self.limit {
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.running += 1;
        state.peak = state.peak.max(state.running);
        GatePass(self)
    }

    fn peak(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).peak
    }
}

impl Drop for GatePass<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        state.running -= 1;
        drop(state);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
#[path = "native_tests.rs"]
mod tests;
