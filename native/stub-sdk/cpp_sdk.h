// cpp_sdk.h (STUB): a stand-in for the vendor zone SDK's C++ header, used only by tests and CI.
//
// The real header ships with the closed vendor library libWeWorkSpecSDK.so and is never committed.
// Its class and method names are undocumented for C++; this stub uses the names of the official
// Java wrapper (SpecCallbackSDK, SpecSDK, IsOk, GetCorpId, ..., BuildResponseHeaderBody, Invoke) and
// the two documented C++ functions (GenerateNotifyId, SpecOpenDebugMode). Adapting the shim to the
// real header is a change to native/shim/zone_shim.cpp alone.
//
// What the stub does is the project's own invention, NOT WeCom's wire format: it decodes and encodes
// with the local codec (DESIGN.md "The local codec") and its Invoke POSTs a sealed envelope to the
// local zone's /sdk/invoke. Its per-instance settings come through the stub-only Stub:: extension
// below, which the shim uses only when built with ZONE_SHIM_STUB_SDK.
#ifndef WWSPEC_STUB_CPP_SDK_H
#define WWSPEC_STUB_CPP_SDK_H

#include <cstdint>
#include <map>
#include <string>

namespace Tencent {
namespace WxWork {

namespace Stub {
struct Instance;
}

// Decodes one inbound request. Keeps REFERENCES to `headers` and `body` (as the vendor SDK does):
// they must outlive this object.
class SpecCallbackSDK {
public:
    SpecCallbackSDK(const std::string &method, const std::map<std::string, std::string> &headers,
                    const std::string &body);
    ~SpecCallbackSDK();
    SpecCallbackSDK(const SpecCallbackSDK &) = delete;
    SpecCallbackSDK &operator=(const SpecCallbackSDK &) = delete;

    bool IsOk() const;
    std::string GetCorpId() const;
    int64_t GetAgentId() const;
    int64_t GetCallType() const;
    std::string GetData() const;
    bool GetIsAsync() const;
    std::string GetJobInfo() const;
    std::string GetAbilityId() const;
    std::string GetNotifyId() const;

    // Signs and encrypts `plaintext` (pass "" when !IsOk()); then read the two getters below.
    void BuildResponseHeaderBody(const std::string &plaintext);
    std::map<std::string, std::string> GetResponseHeaders() const;
    std::string GetResponseBody() const;

private:
    struct State;
    void decode(const std::string &method);
    const std::map<std::string, std::string> &headers_;
    const std::string &body_;
    State *state_;
};

// Calls SDK APIs in the context of a corp, an app and (optionally) an ability and a job.
class SpecSDK {
public:
    SpecSDK(const std::string &corp_id, int64_t agent_id, const std::string &ability_id,
            const std::string &job_info);
    explicit SpecSDK(const SpecCallbackSDK &callback);
    ~SpecSDK();
    SpecSDK(const SpecSDK &) = delete;
    SpecSDK &operator=(const SpecSDK &) = delete;

    // Invoke shape 1 ("set-request", the Java wrapper's instance methods): SetRequest, then
    // Invoke(api), then GetResponse. Returns 0, or -10001 (not initialised), -10002 (no request),
    // -10003 (no api), -10004, -10006 (failed), -10007 (empty response).
    void SetRequest(const std::string &request_json);
    int Invoke(const std::string &api);
    std::string GetResponse() const;

    // How many calls went through each shape (stub only: lets the shim check prove which one a build
    // uses).
    static uint64_t CallsOfShape(int shape);

private:
    friend int Invoke(SpecSDK *sdk, const std::string &api, const std::string &request);
    int invoke(const std::string &api, int shape);

    Stub::Instance *instance_;
    std::string corp_id_;
    int64_t agent_id_;
    std::string ability_id_;
    std::string job_info_;
    bool has_request_ = false;
    std::string request_;
    std::string response_;
};

// Invoke shape 2 ("request-arg", the Java layer's native Invoke(sdk, apiName, request)): the request
// is an argument; the response is read with sdk->GetResponse(). Same return codes as shape 1.
int Invoke(SpecSDK *sdk, const std::string &api, const std::string &request);

std::string GenerateNotifyId();
// The SDK's version and build date (Java: SpecUtil.GetSDKVersion(); the C++ name is unconfirmed).
std::string GetSDKVersion();
bool SpecOpenDebugMode(const std::string &debug_token, const std::string &access_token);

// SDK log functions (names follow the Java wrapper's SpecUtil; unverified for C++), in two shapes.
// Log shape 1: the line as a string.
void WWSpecLogError(const std::string &reqid, const std::string &message);
void WWSpecLogInfo(const std::string &reqid, const std::string &message);
void WWSpecLogDebug(const std::string &reqid, const std::string &message);
// Log shape 2: printf-style with a request id (the Java layer's WWSpecLogInfoWithReqId). The format
// attribute makes -Wformat-security refuse a non-literal format string at compile time.
void WWSpecLogErrorWithReqId(const char *reqid, const char *format, ...) __attribute__((format(printf, 2, 3)));
void WWSpecLogInfoWithReqId(const char *reqid, const char *format, ...) __attribute__((format(printf, 2, 3)));
void WWSpecLogDebugWithReqId(const char *reqid, const char *format, ...) __attribute__((format(printf, 2, 3)));

// A vendor-header-style inline helper with an unused parameter: with -Wall -Wextra -Werror it breaks
// any build that includes this header with -I instead of -isystem (native/build.sh uses -isystem).
// The stub's own sources (which find this header beside them, not as a system header) skip it.
#ifndef WWSPEC_STUB_IMPLEMENTATION
inline int SpecHeaderVersion(int reserved) { return 1; }
#endif

// ---- Stub-only extension: per-instance settings. The vendor SDK has nothing like it. ----
namespace Stub {

// Parses `options` ("key=value" pairs separated by ';' or newlines; see native/stub-sdk/README.md).
// Returns nullptr and sets `error` (naming the key, never a value) when they are invalid.
Instance *Open(const std::string &options, std::string *error);
void Close(Instance *instance);

// Binds the calling thread to `instance` for the scope's lifetime; SDK objects created meanwhile use
// its settings. Without a scope the SDK is "not initialised".
class Scope {
public:
    explicit Scope(Instance *instance);
    ~Scope();
    Scope(const Scope &) = delete;
    Scope &operator=(const Scope &) = delete;

private:
    Instance *previous_;
};

}  // namespace Stub

}  // namespace WxWork
}  // namespace Tencent

#endif  // WWSPEC_STUB_CPP_SDK_H
