/*
 * zone_shim.h: the C ABI of the zone program's shim over the vendor zone SDK (cpp_sdk.h).
 *
 * The vendor SDK's interface is C++ (std::string, std::map) and has no C ABI, so the Rust program
 * loads this shim (libzone_shim.so) with dlopen and calls only the functions below.
 *
 * Rules of the boundary
 *  - Strings cross as (pointer, length). They may contain NUL bytes and need not be UTF-8; an empty
 *    string may have a NULL pointer. Input strings are borrowed for the duration of the call only.
 *  - Whoever allocates frees: every object or string the shim returns is freed by the shim's own
 *    function named next to it (zone_shim_free, zone_shim_request_free, zone_shim_reply_free,
 *    zone_shim_string_free). Never free them with anything else.
 *  - No C++ exception crosses the boundary: every function catches everything and returns a code.
 *  - Threads: functions taking a `const zone_shim *` may be called from any number of threads at once.
 *    A zone_shim_request or zone_shim_reply is used by one thread at a time (it may move between
 *    threads). The vendor's outbound SDK object is created and destroyed inside zone_shim_invoke.
 */
#ifndef ZONE_SHIM_H
#define ZONE_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change; the Rust side refuses a shim with another version. */
#define ZONE_SHIM_ABI_VERSION 1u

/* Codes of the shim itself (-19xxx). Vendor codes pass through unchanged: zone_shim_invoke returns
 * Invoke's value (0, -10001..-10007 or a refined code), zone_shim_decode the decoder's -2000x. */
#define ZONE_SHIM_OK 0
#define ZONE_SHIM_E_ARGUMENT (-19001)   /* a NULL pointer with a non-zero length, or a NULL out pointer */
#define ZONE_SHIM_E_EXCEPTION (-19002)  /* the SDK threw; caught in the shim (details in the SDK log) */
#define ZONE_SHIM_E_NO_MEMORY (-19003)  /* std::bad_alloc */
#define ZONE_SHIM_E_INIT (-19004)       /* the SDK could not be initialised (e.g. bad init options) */
#define ZONE_SHIM_E_DEBUG_MODE (-19005) /* SpecOpenDebugMode returned false */
#define ZONE_SHIM_E_UNSUPPORTED (-19006) /* the vendor SDK lacks the function (e.g. GetSDKVersion) */
#define ZONE_SHIM_E_REJECTED (-20000)   /* the decoder said !IsOk() */
#define ZONE_SHIM_E_NO_METHOD (-20001)  /* vendor: no method given */
#define ZONE_SHIM_E_NO_HEADERS (-20002) /* vendor: no headers given */
#define ZONE_SHIM_E_NO_BODY (-20003)    /* vendor: no body given */

/* Levels of zone_shim_log, ordered as the zone orders them (set_log_level: 1 ERR, 2 INFO, 3 DBG). */
#define ZONE_SHIM_LOG_ERR 1
#define ZONE_SHIM_LOG_INFO 2
#define ZONE_SHIM_LOG_DBG 3

/* A borrowed byte string. */
typedef struct zone_shim_str {
    const char *ptr;
    size_t len;
} zone_shim_str;

/* One header: lower-case name, value as received. */
typedef struct zone_shim_header {
    zone_shim_str name;
    zone_shim_str value;
} zone_shim_header;

/* The SDK context of one program instance (opaque). */
typedef struct zone_shim zone_shim;
/* One inbound request: the vendor decoder and the headers and body it refers to (opaque). */
typedef struct zone_shim_request zone_shim_request;
/* One built reply (opaque). */
typedef struct zone_shim_reply zone_shim_reply;

/* The decoded fields of a request (program-callbacks.md 2.4). Views into the request: valid until
 * zone_shim_request_free. */
typedef struct zone_shim_callback {
    zone_shim_str corp_id;
    zone_shim_str job_info;
    zone_shim_str ability_id;
    zone_shim_str notify_id;
    zone_shim_str data;
    int64_t agent_id;
    int64_t call_type;
    int32_t is_async;
} zone_shim_callback;

/* A view of a built reply: valid until zone_shim_reply_free. */
typedef struct zone_shim_reply_view {
    const zone_shim_header *headers;
    size_t header_count;
    zone_shim_str body;
} zone_shim_reply_view;

/* The context and content of one outbound SDK call (program-callbacks.md 4). */
typedef struct zone_shim_invoke_args {
    zone_shim_str corp_id;
    int64_t agent_id;
    zone_shim_str ability_id;
    zone_shim_str job_info;
    zone_shim_str api;
    zone_shim_str request;
} zone_shim_invoke_args;

/* ZONE_SHIM_ABI_VERSION of the built shim. */
uint32_t zone_shim_abi_version(void);

/* Objects and strings the shim has handed out and not yet had back (for leak checks). */
uint64_t zone_shim_live_objects(void);

/* How this shim was built, as a static NUL-terminated string of `key=value` pairs separated by ';':
 * `sdk` (stub | vendor), `invoke` (set-request | request-arg), `log` (string | printf). Optional:
 * a loader accepts a shim without it. */
const char *zone_shim_build_info(void);

/* Creates the SDK context. `options` is an opaque per-instance settings string; the build against
 * the vendor SDK ignores it, the build against the stub SDK reads its settings from it. On failure
 * returns ZONE_SHIM_E_INIT and, if `error` is not NULL, a message (never containing option values)
 * to free with zone_shim_string_free. */
int32_t zone_shim_new(zone_shim_str options, zone_shim **out, char **error, size_t *error_len);
void zone_shim_free(zone_shim *shim);

/* Frees a string returned by the shim. NULL is ignored. */
void zone_shim_string_free(char *ptr);

/* Decodes one request. Returns 0 when the SDK accepted it, else a decoder code. Whenever the vendor
 * decoder was constructed (accepted or not) `*out` receives the request, so that a reply can still be
 * built (from "" when not accepted); otherwise `*out` is NULL. */
int32_t zone_shim_decode(const zone_shim *shim, zone_shim_str method, const zone_shim_header *headers,
                         size_t header_count, zone_shim_str body, zone_shim_request **out);

/* The decoded fields; ZONE_SHIM_E_REJECTED when the request was not accepted. */
int32_t zone_shim_request_callback(const zone_shim_request *request, zone_shim_callback *out);

/* Builds the reply for `plaintext` with the request's decoder (BuildResponseHeaderBody). */
int32_t zone_shim_request_reply(zone_shim_request *request, zone_shim_str plaintext, zone_shim_reply **out);
void zone_shim_request_free(zone_shim_request *request);

int32_t zone_shim_reply_parts(const zone_shim_reply *reply, zone_shim_reply_view *out);
void zone_shim_reply_free(zone_shim_reply *reply);

/* Calls one SDK API (SetRequest, Invoke, GetResponse) with a fresh vendor SDK object. Returns
 * Invoke's value; on 0, `*response` receives the response (free with zone_shim_string_free). Blocks
 * for as long as the SDK does. */
int32_t zone_shim_invoke(const zone_shim *shim, const zone_shim_invoke_args *args, char **response,
                         size_t *response_len);

/* A fresh notify id (GenerateNotifyId); free with zone_shim_string_free. */
int32_t zone_shim_generate_notify_id(const zone_shim *shim, char **out, size_t *out_len);

/* The SDK library's version text (GetSDKVersion, when the library has it); free with
 * zone_shim_string_free. ZONE_SHIM_E_UNSUPPORTED when it does not. Optional: a loader accepts a shim
 * without this function. */
int32_t zone_shim_sdk_version(const zone_shim *shim, char **out, size_t *out_len);

/* Opens the vendor debug mode (SpecOpenDebugMode); ZONE_SHIM_E_DEBUG_MODE when it refuses. */
int32_t zone_shim_open_debug_mode(const zone_shim *shim, zone_shim_str debug_token, zone_shim_str access_token);

/* Writes one line to the SDK log at `level` (ZONE_SHIM_LOG_*), tagged with `reqid` (may be empty). */
void zone_shim_log(const zone_shim *shim, int32_t level, zone_shim_str reqid, zone_shim_str text);

#ifdef __cplusplus
}
#endif

#endif /* ZONE_SHIM_H */
