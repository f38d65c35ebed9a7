// zone_shim.cpp: the C ABI (zone_shim.h) over the vendor zone SDK (cpp_sdk.h). The only C++ of the
// product.
//
// Adapting to the real vendor header touches this file alone, and within it only the section
// "Vendor binding": every vendor class, method and function name the shim uses is written there and
// nowhere else. The rest is the C ABI: (pointer, length) strings, objects owned by the side that
// allocated them, and no exception crossing the boundary.
//
// Build (native/build.sh): g++ -std=c++17 -shared -fPIC zone_shim.cpp -isystem <dir of cpp_sdk.h>
//   -L<dir of libWeWorkSpecSDK.so> -lWeWorkSpecSDK; add -DZONE_SHIM_STUB_SDK against the stub SDK.
//
// Two shapes of the undocumented C++ names are selected at build time (native/build.sh
// --invoke-shape / --log-shape, or -D…):
//   ZONE_SHIM_INVOKE_SHAPE 1  sdk.SetRequest(request); sdk.Invoke(api)       (Java wrapper, default)
//                          2  Invoke(&sdk, api, request)                     (the Java layer's native call)
//   ZONE_SHIM_LOG_SHAPE    1  WWSpecLogInfo(reqid, text)                     (std::string, default)
//                          2  WWSpecLogInfoWithReqId(reqid, "%s", text)       (printf-style)
// In shape 2 the text is always an argument of a literal "%s", never the format itself.

#include "zone_shim.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "cpp_sdk.h"

namespace {

// ================================ Vendor binding ================================
// Names follow the official Java wrapper (program-callbacks.md 2-4); change them here, and only
// here, to match the real cpp_sdk.h.
namespace vendor {

#ifndef ZONE_SHIM_INVOKE_SHAPE
#define ZONE_SHIM_INVOKE_SHAPE 1
#endif
#ifndef ZONE_SHIM_LOG_SHAPE
#define ZONE_SHIM_LOG_SHAPE 1
#endif
#if ZONE_SHIM_INVOKE_SHAPE != 1 && ZONE_SHIM_INVOKE_SHAPE != 2
#error "ZONE_SHIM_INVOKE_SHAPE must be 1 (SetRequest + Invoke(api)) or 2 (Invoke(sdk, api, request))"
#endif
#if ZONE_SHIM_LOG_SHAPE != 1 && ZONE_SHIM_LOG_SHAPE != 2
#error "ZONE_SHIM_LOG_SHAPE must be 1 (std::string lines) or 2 (printf-style with a request id)"
#endif

using Headers = std::map<std::string, std::string>;
using Decoder = Tencent::WxWork::SpecCallbackSDK;

struct Fields {
    std::string corp_id;
    int64_t agent_id = 0;
    int64_t call_type = 0;
    std::string data;
    bool is_async = false;
    std::string job_info;
    std::string ability_id;
    std::string notify_id;
};

// The decoder keeps references to `headers` and `body`; the caller keeps them alive as long.
std::unique_ptr<Decoder> decode(const std::string &method, const Headers &headers, const std::string &body) {
    return std::unique_ptr<Decoder>(new Decoder(method, headers, body));
}

bool is_ok(const Decoder &d) { return d.IsOk(); }

Fields fields(const Decoder &d) {
    Fields f;
    f.corp_id = d.GetCorpId();
    f.agent_id = d.GetAgentId();
    f.call_type = d.GetCallType();
    f.data = d.GetData();
    f.is_async = d.GetIsAsync();
    f.job_info = d.GetJobInfo();
    f.ability_id = d.GetAbilityId();
    f.notify_id = d.GetNotifyId();
    return f;
}

void build_reply(Decoder &d, const std::string &plaintext, Headers *headers, std::string *body) {
    d.BuildResponseHeaderBody(plaintext);
    *headers = d.GetResponseHeaders();
    *body = d.GetResponseBody();
}

// One vendor SDK object per call, created and destroyed on the calling thread.
int invoke(const std::string &corp_id, int64_t agent_id, const std::string &ability_id, const std::string &job_info,
           const std::string &api, const std::string &request, std::string *response) {
    Tencent::WxWork::SpecSDK sdk(corp_id, agent_id, ability_id, job_info);
#if ZONE_SHIM_INVOKE_SHAPE == 2
    int ret = Tencent::WxWork::Invoke(&sdk, api, request);
#else
    sdk.SetRequest(request);
    int ret = sdk.Invoke(api);
#endif
    if (ret == 0) *response = sdk.GetResponse();
    return ret;
}

// Which shapes this build uses (zone_shim_build_info).
const char *build_info() {
#if ZONE_SHIM_INVOKE_SHAPE == 2
#define ZONE_SHIM_INVOKE_NAME "request-arg"
#else
#define ZONE_SHIM_INVOKE_NAME "set-request"
#endif
#if ZONE_SHIM_LOG_SHAPE == 2
#define ZONE_SHIM_LOG_NAME "printf"
#else
#define ZONE_SHIM_LOG_NAME "string"
#endif
#ifdef ZONE_SHIM_STUB_SDK
#define ZONE_SHIM_SDK_NAME "stub"
#else
#define ZONE_SHIM_SDK_NAME "vendor"
#endif
    return "sdk=" ZONE_SHIM_SDK_NAME ";invoke=" ZONE_SHIM_INVOKE_NAME ";log=" ZONE_SHIM_LOG_NAME;
}

std::string generate_notify_id() { return Tencent::WxWork::GenerateNotifyId(); }

}  // namespace vendor
}  // namespace

// The SDK's version: Java has SpecUtil.GetSDKVersion(); the C++ name is a guess. Declared weak, so a
// vendor library without it still links and loads (the shim then answers ZONE_SHIM_E_UNSUPPORTED).
namespace Tencent {
namespace WxWork {
std::string GetSDKVersion() __attribute__((weak));
}  // namespace WxWork
}  // namespace Tencent

namespace {
namespace vendor {

bool sdk_version(std::string *out) {
    if (&Tencent::WxWork::GetSDKVersion == nullptr) return false;
    *out = Tencent::WxWork::GetSDKVersion();
    return true;
}

bool open_debug_mode(const std::string &debug_token, const std::string &access_token) {
    return Tencent::WxWork::SpecOpenDebugMode(debug_token, access_token);
}

void log(int32_t level, const std::string &reqid, const std::string &text) {
#if ZONE_SHIM_LOG_SHAPE == 2
    // printf-style: the text is an argument of a literal format, never the format (a '%' in a line
    // must not read varargs that do not exist). A NUL byte ends the line there.
    switch (level) {
        case ZONE_SHIM_LOG_ERR: Tencent::WxWork::WWSpecLogErrorWithReqId(reqid.c_str(), "%s", text.c_str()); break;
        case ZONE_SHIM_LOG_DBG: Tencent::WxWork::WWSpecLogDebugWithReqId(reqid.c_str(), "%s", text.c_str()); break;
        default: Tencent::WxWork::WWSpecLogInfoWithReqId(reqid.c_str(), "%s", text.c_str()); break;
    }
#else
    switch (level) {
        case ZONE_SHIM_LOG_ERR: Tencent::WxWork::WWSpecLogError(reqid, text); break;
        case ZONE_SHIM_LOG_DBG: Tencent::WxWork::WWSpecLogDebug(reqid, text); break;
        default: Tencent::WxWork::WWSpecLogInfo(reqid, text); break;
    }
#endif
}

// Per-instance settings exist only in the stub SDK (tests); the vendor build ignores the options.
#ifdef ZONE_SHIM_STUB_SDK
struct Instance {
    Tencent::WxWork::Stub::Instance *stub = nullptr;
    ~Instance() { Tencent::WxWork::Stub::Close(stub); }
};
std::unique_ptr<Instance> open(const std::string &options, std::string *error) {
    Tencent::WxWork::Stub::Instance *stub = Tencent::WxWork::Stub::Open(options, error);
    if (stub == nullptr) return nullptr;
    std::unique_ptr<Instance> instance(new Instance());
    instance->stub = stub;
    return instance;
}
struct Scope {
    explicit Scope(const Instance &i) : scope(i.stub) {}
    Tencent::WxWork::Stub::Scope scope;
};
#else
struct Instance {};
std::unique_ptr<Instance> open(const std::string &, std::string *) { return std::unique_ptr<Instance>(new Instance()); }
struct Scope {
    explicit Scope(const Instance &) {}
};
#endif

}  // namespace vendor
// ============================== End of vendor binding ==============================

std::atomic<uint64_t> g_live{0};

std::string to_string(zone_shim_str s) { return s.len == 0 ? std::string() : std::string(s.ptr, s.len); }

bool valid(zone_shim_str s) { return s.ptr != nullptr || s.len == 0; }

zone_shim_str view(const std::string &s) { return zone_shim_str{s.data(), s.size()}; }

// Copies `s` into a malloc'd buffer owned by the caller until zone_shim_string_free.
int32_t give_string(const std::string &s, char **out, size_t *out_len) {
    char *p = static_cast<char *>(std::malloc(s.empty() ? 1 : s.size()));
    if (p == nullptr) return ZONE_SHIM_E_NO_MEMORY;
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    *out = p;
    *out_len = s.size();
    g_live.fetch_add(1, std::memory_order_relaxed);
    return ZONE_SHIM_OK;
}

// Runs `f`, turning any exception into a code: nothing thrown crosses the C ABI.
template <typename F>
int32_t guarded(F &&f) noexcept {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return ZONE_SHIM_E_NO_MEMORY;
    } catch (...) {
        return ZONE_SHIM_E_EXCEPTION;
    }
}

}  // namespace

struct zone_shim {
    std::unique_ptr<vendor::Instance> instance;
};

struct zone_shim_request {
    const zone_shim *shim = nullptr;
    // Declared before `decoder`, so destroyed after it: the decoder refers to them.
    std::string method;
    vendor::Headers headers;
    std::string body;
    std::unique_ptr<vendor::Decoder> decoder;
    bool ok = false;
    vendor::Fields fields;
};

struct zone_shim_reply {
    std::vector<std::pair<std::string, std::string>> headers;
    std::vector<zone_shim_header> header_views;
    std::string body;
};

#pragma GCC visibility push(default)
extern "C" {

uint32_t zone_shim_abi_version(void) { return ZONE_SHIM_ABI_VERSION; }

uint64_t zone_shim_live_objects(void) { return g_live.load(std::memory_order_relaxed); }

const char *zone_shim_build_info(void) { return vendor::build_info(); }

int32_t zone_shim_new(zone_shim_str options, zone_shim **out, char **error, size_t *error_len) {
    if (out != nullptr) *out = nullptr;
    if (error != nullptr) *error = nullptr;
    if (error_len != nullptr) *error_len = 0;
    if (out == nullptr || !valid(options)) return ZONE_SHIM_E_ARGUMENT;
    return guarded([&]() -> int32_t {
        std::string why;
        std::unique_ptr<vendor::Instance> instance = vendor::open(to_string(options), &why);
        if (!instance) {
            if (error != nullptr && error_len != nullptr) give_string(why, error, error_len);
            return ZONE_SHIM_E_INIT;
        }
        zone_shim *shim = new zone_shim();
        shim->instance = std::move(instance);
        g_live.fetch_add(1, std::memory_order_relaxed);
        *out = shim;
        return ZONE_SHIM_OK;
    });
}

void zone_shim_free(zone_shim *shim) {
    if (shim == nullptr) return;
    guarded([&]() -> int32_t {
        delete shim;
        return ZONE_SHIM_OK;
    });
    g_live.fetch_sub(1, std::memory_order_relaxed);
}

void zone_shim_string_free(char *ptr) {
    if (ptr == nullptr) return;
    std::free(ptr);
    g_live.fetch_sub(1, std::memory_order_relaxed);
}

int32_t zone_shim_decode(const zone_shim *shim, zone_shim_str method, const zone_shim_header *headers,
                         size_t header_count, zone_shim_str body, zone_shim_request **out) {
    if (out != nullptr) *out = nullptr;
    if (shim == nullptr || out == nullptr || !valid(method) || !valid(body) ||
        (headers == nullptr && header_count != 0))
        return ZONE_SHIM_E_ARGUMENT;
    for (size_t i = 0; i < header_count; ++i)
        if (!valid(headers[i].name) || !valid(headers[i].value)) return ZONE_SHIM_E_ARGUMENT;
    return guarded([&]() -> int32_t {
        std::unique_ptr<zone_shim_request> req(new zone_shim_request());
        req->shim = shim;
        req->method = to_string(method);
        for (size_t i = 0; i < header_count; ++i)
            req->headers.emplace(to_string(headers[i].name), to_string(headers[i].value));  // first one wins
        req->body = to_string(body);
        vendor::Scope scope(*shim->instance);
        req->decoder = vendor::decode(req->method, req->headers, req->body);
        req->ok = vendor::is_ok(*req->decoder);
        int32_t code = ZONE_SHIM_OK;
        if (req->ok) {
            req->fields = vendor::fields(*req->decoder);
        } else if (req->method.empty()) {
            code = ZONE_SHIM_E_NO_METHOD;
        } else if (req->headers.empty()) {
            code = ZONE_SHIM_E_NO_HEADERS;
        } else if (req->body.empty()) {
            code = ZONE_SHIM_E_NO_BODY;
        } else {
            code = ZONE_SHIM_E_REJECTED;
        }
        *out = req.release();
        g_live.fetch_add(1, std::memory_order_relaxed);
        return code;
    });
}

int32_t zone_shim_request_callback(const zone_shim_request *request, zone_shim_callback *out) {
    if (request == nullptr || out == nullptr) return ZONE_SHIM_E_ARGUMENT;
    if (!request->ok) return ZONE_SHIM_E_REJECTED;
    const vendor::Fields &f = request->fields;
    out->corp_id = view(f.corp_id);
    out->job_info = view(f.job_info);
    out->ability_id = view(f.ability_id);
    out->notify_id = view(f.notify_id);
    out->data = view(f.data);
    out->agent_id = f.agent_id;
    out->call_type = f.call_type;
    out->is_async = f.is_async ? 1 : 0;
    return ZONE_SHIM_OK;
}

int32_t zone_shim_request_reply(zone_shim_request *request, zone_shim_str plaintext, zone_shim_reply **out) {
    if (out != nullptr) *out = nullptr;
    if (request == nullptr || out == nullptr || !valid(plaintext)) return ZONE_SHIM_E_ARGUMENT;
    return guarded([&]() -> int32_t {
        vendor::Scope scope(*request->shim->instance);
        vendor::Headers headers;
        std::unique_ptr<zone_shim_reply> reply(new zone_shim_reply());
        vendor::build_reply(*request->decoder, to_string(plaintext), &headers, &reply->body);
        reply->headers.assign(headers.begin(), headers.end());
        reply->header_views.reserve(reply->headers.size());
        for (const auto &h : reply->headers) reply->header_views.push_back(zone_shim_header{view(h.first), view(h.second)});
        *out = reply.release();
        g_live.fetch_add(1, std::memory_order_relaxed);
        return ZONE_SHIM_OK;
    });
}

void zone_shim_request_free(zone_shim_request *request) {
    if (request == nullptr) return;
    guarded([&]() -> int32_t {
        vendor::Scope scope(*request->shim->instance);
        delete request;
        return ZONE_SHIM_OK;
    });
    g_live.fetch_sub(1, std::memory_order_relaxed);
}

int32_t zone_shim_reply_parts(const zone_shim_reply *reply, zone_shim_reply_view *out) {
    if (reply == nullptr || out == nullptr) return ZONE_SHIM_E_ARGUMENT;
    out->headers = reply->header_views.data();
    out->header_count = reply->header_views.size();
    out->body = view(reply->body);
    return ZONE_SHIM_OK;
}

void zone_shim_reply_free(zone_shim_reply *reply) {
    if (reply == nullptr) return;
    delete reply;
    g_live.fetch_sub(1, std::memory_order_relaxed);
}

int32_t zone_shim_invoke(const zone_shim *shim, const zone_shim_invoke_args *args, char **response,
                         size_t *response_len) {
    if (response != nullptr) *response = nullptr;
    if (response_len != nullptr) *response_len = 0;
    if (shim == nullptr || args == nullptr || response == nullptr || response_len == nullptr) return ZONE_SHIM_E_ARGUMENT;
    if (!valid(args->corp_id) || !valid(args->ability_id) || !valid(args->job_info) || !valid(args->api) ||
        !valid(args->request))
        return ZONE_SHIM_E_ARGUMENT;
    return guarded([&]() -> int32_t {
        vendor::Scope scope(*shim->instance);
        std::string rsp;
        int ret = vendor::invoke(to_string(args->corp_id), args->agent_id, to_string(args->ability_id),
                                 to_string(args->job_info), to_string(args->api), to_string(args->request), &rsp);
        if (ret != 0) return static_cast<int32_t>(ret);
        return give_string(rsp, response, response_len);
    });
}

int32_t zone_shim_generate_notify_id(const zone_shim *shim, char **out, size_t *out_len) {
    if (out != nullptr) *out = nullptr;
    if (out_len != nullptr) *out_len = 0;
    if (shim == nullptr || out == nullptr || out_len == nullptr) return ZONE_SHIM_E_ARGUMENT;
    return guarded([&]() -> int32_t {
        vendor::Scope scope(*shim->instance);
        return give_string(vendor::generate_notify_id(), out, out_len);
    });
}

int32_t zone_shim_sdk_version(const zone_shim *shim, char **out, size_t *out_len) {
    if (out != nullptr) *out = nullptr;
    if (out_len != nullptr) *out_len = 0;
    if (shim == nullptr || out == nullptr || out_len == nullptr) return ZONE_SHIM_E_ARGUMENT;
    return guarded([&]() -> int32_t {
        vendor::Scope scope(*shim->instance);
        std::string version;
        if (!vendor::sdk_version(&version)) return ZONE_SHIM_E_UNSUPPORTED;
        return give_string(version, out, out_len);
    });
}

int32_t zone_shim_open_debug_mode(const zone_shim *shim, zone_shim_str debug_token, zone_shim_str access_token) {
    if (shim == nullptr || !valid(debug_token) || !valid(access_token)) return ZONE_SHIM_E_ARGUMENT;
    return guarded([&]() -> int32_t {
        vendor::Scope scope(*shim->instance);
        return vendor::open_debug_mode(to_string(debug_token), to_string(access_token)) ? ZONE_SHIM_OK
                                                                                         : ZONE_SHIM_E_DEBUG_MODE;
    });
}

void zone_shim_log(const zone_shim *shim, int32_t level, zone_shim_str reqid, zone_shim_str text) {
    if (shim == nullptr || !valid(reqid) || !valid(text)) return;
    guarded([&]() -> int32_t {
        vendor::Scope scope(*shim->instance);
        vendor::log(level, to_string(reqid), to_string(text));
        return ZONE_SHIM_OK;
    });
}

}  // extern "C"
#pragma GCC visibility pop
