// The stub vendor SDK (tests and CI only): the classes of cpp_sdk.h over the local codec, an Invoke
// that POSTs a sealed envelope to the local zone's /sdk/invoke (exactly as src/sdk/local.rs does), and
// injectable failures. Settings are per instance (Stub::Open) and reach SDK objects through the
// calling thread's Stub::Scope. Nothing here logs request content, keys or tokens.
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <thread>

#include "cpp_sdk.h"
#include "stub_internal.h"

namespace Tencent {
namespace WxWork {

namespace Stub {

// One injected failure: `ret` returned instead of calling the zone, after sleeping `slow_ms`; or a
// successful response padded to `bytes` bytes.
struct Fault {
    int ret = 0;
    int slow_ms = 0;
    size_t bytes = 0;
};

struct Instance {
    std::unique_ptr<stub::Codec> codec;
    std::string zone_url;
    int http_timeout_ms = 30000;
    size_t max_response_bytes = 64u << 20;
    std::string log_file;
    std::mutex log_mu;
    bool debug_mode_accepts = true;
    std::map<std::string, Fault> faults;  // by API name, "*" for every API

    const Fault *fault(const std::string &api) const {
        auto it = faults.find(api);
        if (it == faults.end()) it = faults.find("*");
        return it == faults.end() ? nullptr : &it->second;
    }

    void log(const char *level, const std::string &reqid, const std::string &message) {
        if (log_file.empty()) return;
        std::lock_guard<std::mutex> lock(log_mu);
        std::ofstream f(log_file, std::ios::app | std::ios::binary);
        f << stub::unix_now() << ' ' << level << " [" << reqid << "] " << message << '\n';
    }
};

}  // namespace Stub

namespace {

thread_local Stub::Instance *t_current = nullptr;
std::atomic<uint64_t> g_shape_calls[3];

std::string trim(const std::string &s) {
    size_t b = s.find_first_not_of(" \t\r");
    size_t e = s.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

bool to_int(const std::string &s, long long lo, long long hi, long long *out) {
    try {
        size_t used = 0;
        long long v = std::stoll(s, &used);
        if (used != s.size() || v < lo || v > hi) return false;
        *out = v;
        return true;
    } catch (...) {
        return false;
    }
}

bool is_token(const std::string &t) {
    if (t.empty() || t.size() > 32) return false;
    for (char c : t)
        if (!std::isalnum(static_cast<unsigned char>(c))) return false;
    return true;
}

bool parse_fault(const std::string &spec, Stub::Fault *f) {
    size_t p = 0;
    while (p <= spec.size()) {
        size_t comma = spec.find(',', p);
        std::string item = trim(spec.substr(p, comma == std::string::npos ? std::string::npos : comma - p));
        size_t colon = item.find(':');
        if (colon == std::string::npos) return false;
        std::string kind = item.substr(0, colon);
        long long v = 0;
        if (kind == "ret" && to_int(item.substr(colon + 1), -2147483647LL, 2147483647LL, &v) && v != 0) {
            f->ret = int(v);
        } else if (kind == "slow" && to_int(item.substr(colon + 1), 0, 600000, &v)) {
            f->slow_ms = int(v);
        } else if (kind == "bytes" && to_int(item.substr(colon + 1), 32, 1LL << 30, &v)) {
            f->bytes = size_t(v);
        } else {
            return false;
        }
        if (comma == std::string::npos) break;
        p = comma + 1;
    }
    return true;
}

const stub::Json *member(const stub::Json &obj, const std::string &name) {
    for (const auto &m : obj.members)
        if (m.first == name) return &m.second;
    return nullptr;
}

// The callback message (DESIGN.md "The local codec"), with the rules of src/sdk/local.rs's
// CallbackMessage: no unknown or duplicate fields; corp_id, agent_id, call_type and data required.
bool parse_message(const std::string &text, stub::Json *doc) {
    if (!stub::json_parse(text, doc) || doc->kind != stub::Json::kObject) return false;
    static const std::map<std::string, stub::Json::Kind> kinds = {
        {"corp_id", stub::Json::kString},  {"agent_id", stub::Json::kInt},   {"call_type", stub::Json::kInt},
        {"is_async", stub::Json::kBool},   {"job_info", stub::Json::kString}, {"ability_id", stub::Json::kString},
        {"notify_id", stub::Json::kString}, {"data", stub::Json::kString}};
    std::map<std::string, int> seen;
    for (const auto &m : doc->members) {
        auto k = kinds.find(m.first);
        if (k == kinds.end() || k->second != m.second.kind || ++seen[m.first] > 1) return false;
    }
    return seen.count("corp_id") && seen.count("agent_id") && seen.count("call_type") && seen.count("data");
}

std::string str_field(const stub::Json &doc, const char *name) {
    const stub::Json *v = member(doc, name);
    return v == nullptr ? std::string() : v->s;
}

}  // namespace

namespace Stub {

Instance *Open(const std::string &options, std::string *error) {
    std::unique_ptr<Instance> inst(new Instance());
    std::string token;
    std::map<uint32_t, stub::Bytes> keys;
    long long window = 300, capacity = 100000;
    size_t p = 0;
    while (p < options.size()) {
        size_t end = options.find_first_of(";\n", p);
        if (end == std::string::npos) end = options.size();
        std::string item = trim(options.substr(p, end - p));
        p = end + 1;
        if (item.empty()) continue;
        size_t eq = item.find('=');
        std::string key = trim(item.substr(0, eq));
        std::string value = eq == std::string::npos ? std::string() : trim(item.substr(eq + 1));
        bool ok = eq != std::string::npos;
        long long n = 0;
        if (!ok) {
        } else if (key == "token") {
            ok = is_token(value);
            token = value;
        } else if (key.compare(0, 4, "key.") == 0) {
            stub::Bytes k;
            ok = to_int(key.substr(4), 0, 0xffffffffLL, &n) && stub::parse_encoding_aes_key(value, &k);
            if (ok) keys[uint32_t(n)] = k;
        } else if (key == "zone_url") {
            ok = value.compare(0, 7, "http://") == 0;
            inst->zone_url = value;
        } else if (key == "window_secs") {
            ok = to_int(value, 1, 86400, &window);
        } else if (key == "nonce_capacity") {
            ok = to_int(value, 1, 100000000, &capacity);
        } else if (key == "http_timeout_ms") {
            ok = to_int(value, 1, 600000, &n);
            inst->http_timeout_ms = int(n);
        } else if (key == "max_response_bytes") {
            ok = to_int(value, 1, 1LL << 32, &n);
            inst->max_response_bytes = size_t(n);
        } else if (key == "log_file") {
            ok = !value.empty();
            inst->log_file = value;
        } else if (key == "debug_mode") {
            ok = value == "accept" || value == "refuse";
            inst->debug_mode_accepts = value == "accept";
        } else if (key.compare(0, 6, "fault.") == 0 && key.size() > 6) {
            ok = parse_fault(value, &inst->faults[key.substr(6)]);
        } else {
            *error = "stub sdk: unknown init option `" + key + "`";
            return nullptr;
        }
        if (!ok) {
            *error = "stub sdk: init option `" + key + "` has an invalid value";
            return nullptr;
        }
    }
    if (token.empty() || keys.empty()) {
        *error = "stub sdk: init options need `token` and at least one `key.<ver>`";
        return nullptr;
    }
    inst->codec.reset(new stub::Codec(token, keys, window, size_t(capacity)));
    return inst.release();
}

void Close(Instance *instance) { delete instance; }

Scope::Scope(Instance *instance) : previous_(t_current) { t_current = instance; }
Scope::~Scope() { t_current = previous_; }

}  // namespace Stub

struct SpecCallbackSDK::State {
    Stub::Instance *inst = nullptr;
    bool ok = false;
    stub::Json message;
    std::map<std::string, std::string> reply_headers;
    std::string reply_body;
};

SpecCallbackSDK::SpecCallbackSDK(const std::string &method, const std::map<std::string, std::string> &headers,
                                 const std::string &body)
    : headers_(headers), body_(body), state_(new State()) {
    try {
        decode(method);
    } catch (...) {
        delete state_;
        throw;
    }
}

void SpecCallbackSDK::decode(const std::string &method) {
    state_->inst = t_current;
    if (state_->inst == nullptr) return;  // not initialised
    int code = -20001;
    stub::Opened opened;
    if (method != "POST") {
        code = -20001;
    } else if (headers_.empty()) {
        code = -20002;
    } else if (body_.empty()) {
        code = -20003;
    } else if ((code = state_->inst->codec->open(headers_, body_, &opened)) != stub::kOk) {
    } else if (!parse_message(opened.message, &state_->message)) {
        code = stub::kBadMessage;
    } else if (str_field(state_->message, "corp_id") != opened.receive_id) {
        code = stub::kValidateReceiveId;
    } else {
        state_->ok = true;
        return;
    }
    state_->inst->log("ERR", "", "callback refused: code " + std::to_string(code));
}

SpecCallbackSDK::~SpecCallbackSDK() { delete state_; }

bool SpecCallbackSDK::IsOk() const { return state_->ok; }
std::string SpecCallbackSDK::GetCorpId() const { return str_field(state_->message, "corp_id"); }
int64_t SpecCallbackSDK::GetAgentId() const {
    const stub::Json *v = member(state_->message, "agent_id");
    return v == nullptr ? 0 : v->i;
}
int64_t SpecCallbackSDK::GetCallType() const {
    const stub::Json *v = member(state_->message, "call_type");
    return v == nullptr ? 0 : v->i;
}
std::string SpecCallbackSDK::GetData() const { return str_field(state_->message, "data"); }
bool SpecCallbackSDK::GetIsAsync() const {
    const stub::Json *v = member(state_->message, "is_async");
    return v != nullptr && v->b;
}
std::string SpecCallbackSDK::GetJobInfo() const { return str_field(state_->message, "job_info"); }
std::string SpecCallbackSDK::GetAbilityId() const { return str_field(state_->message, "ability_id"); }
std::string SpecCallbackSDK::GetNotifyId() const { return str_field(state_->message, "notify_id"); }

void SpecCallbackSDK::BuildResponseHeaderBody(const std::string &plaintext) {
    state_->reply_headers.clear();
    state_->reply_body.clear();
    if (state_->inst == nullptr) return;
    stub::Sealed sealed = state_->inst->codec->seal(plaintext, state_->ok ? GetCorpId() : std::string());
    state_->reply_headers.insert(sealed.headers.begin(), sealed.headers.end());
    state_->reply_body = sealed.body;
}

std::map<std::string, std::string> SpecCallbackSDK::GetResponseHeaders() const { return state_->reply_headers; }
std::string SpecCallbackSDK::GetResponseBody() const { return state_->reply_body; }

SpecSDK::SpecSDK(const std::string &corp_id, int64_t agent_id, const std::string &ability_id,
                 const std::string &job_info)
    : instance_(t_current), corp_id_(corp_id), agent_id_(agent_id), ability_id_(ability_id), job_info_(job_info) {}

SpecSDK::SpecSDK(const SpecCallbackSDK &cb)
    : instance_(cb.IsOk() ? t_current : nullptr),
      corp_id_(cb.GetCorpId()),
      agent_id_(cb.GetAgentId()),
      ability_id_(cb.GetAbilityId()),
      job_info_(cb.GetJobInfo()) {}

SpecSDK::~SpecSDK() {}

void SpecSDK::SetRequest(const std::string &request_json) {
    request_ = request_json;
    has_request_ = true;
}

uint64_t SpecSDK::CallsOfShape(int shape) {
    return shape == 1 || shape == 2 ? g_shape_calls[shape].load(std::memory_order_relaxed) : 0;
}

int SpecSDK::Invoke(const std::string &api) { return invoke(api, 1); }

int Invoke(SpecSDK *sdk, const std::string &api, const std::string &request) {
    if (sdk == nullptr) return -10001;
    sdk->SetRequest(request);
    return sdk->invoke(api, 2);
}

int SpecSDK::invoke(const std::string &api, int shape) {
    g_shape_calls[shape].fetch_add(1, std::memory_order_relaxed);
    response_.clear();
    if (instance_ == nullptr || corp_id_.empty()) return -10001;
    if (!has_request_) return -10002;
    if (api.empty()) return -10003;
    Stub::Instance &inst = *instance_;
    if (const Stub::Fault *f = inst.fault(api)) {
        if (f->slow_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(f->slow_ms));
        if (f->ret != 0) {
            inst.log("ERR", "", "invoke " + api + ": injected return code " + std::to_string(f->ret));
            return f->ret;
        }
        if (f->bytes > 0) {
            std::string head = "{\"errcode\":0,\"errmsg\":\"ok\",\"padding\":\"";
            response_ = head + std::string(f->bytes > head.size() + 2 ? f->bytes - head.size() - 2 : 0, 'x') + "\"}";
            return 0;
        }
    }
    if (inst.zone_url.empty()) {
        inst.log("ERR", "", "invoke " + api + ": no zone_url configured");
        return -10006;
    }
    std::string message = "{\"corp_id\":" + stub::json_quote(corp_id_) + ",\"agent_id\":" + std::to_string(agent_id_) +
                          ",\"ability_id\":" + stub::json_quote(ability_id_) + ",\"job_info\":" +
                          stub::json_quote(job_info_) + ",\"api\":" + stub::json_quote(api) +
                          ",\"request\":" + stub::json_quote(request_) + "}";
    stub::Sealed sealed = inst.codec->seal(message, corp_id_);
    stub::HttpResponse rsp;
    std::string error;
    if (!stub::http_post(inst.zone_url, "/sdk/invoke", sealed.headers, sealed.body, inst.http_timeout_ms,
                         inst.max_response_bytes, &rsp, &error)) {
        inst.log("ERR", "", "invoke " + api + ": " + error);
        return -10006;
    }
    if (rsp.status != 200) {
        inst.log("ERR", "", "invoke " + api + ": zone answered HTTP " + std::to_string(rsp.status));
        return -10006;
    }
    auto ret = rsp.headers.find("ww-invoke-ret");
    long long code = 0;
    if (ret != rsp.headers.end() && to_int(ret->second, -2147483647LL, 2147483647LL, &code) && code != 0) {
        inst.log("ERR", "", "invoke " + api + ": return code " + std::to_string(code));
        return int(code);
    }
    stub::Opened opened;
    int open = inst.codec->open(rsp.headers, rsp.body, &opened);
    if (open != stub::kOk || opened.receive_id != corp_id_) {
        inst.log("ERR", "", "invoke " + api + ": the zone's reply did not verify: code " + std::to_string(open));
        return -10006;
    }
    if (opened.message.empty()) return -10007;
    response_ = opened.message;
    return 0;
}

std::string SpecSDK::GetResponse() const { return response_; }

std::string GenerateNotifyId() {
    static const char hex[] = "0123456789abcdef";
    std::string id;
    for (char b : stub::random_bytes(16)) {
        id.push_back(hex[(static_cast<unsigned char>(b) >> 4) & 15]);
        id.push_back(hex[static_cast<unsigned char>(b) & 15]);
    }
    return id;
}

std::string GetSDKVersion() { return "stub-sdk 1.1.0 (built " __DATE__ ")"; }

bool SpecOpenDebugMode(const std::string &debug_token, const std::string &access_token) {
    Stub::Instance *inst = t_current;
    if (inst == nullptr) return false;
    if (debug_token.empty() || access_token.empty() || !inst->debug_mode_accepts) {
        inst->log("ERR", "", "debug mode refused");
        return false;
    }
    inst->log("INFO", "", "debug mode opened");
    return true;
}

void WWSpecLogError(const std::string &reqid, const std::string &message) {
    if (t_current != nullptr) t_current->log("ERR", reqid, message);
}
void WWSpecLogInfo(const std::string &reqid, const std::string &message) {
    if (t_current != nullptr) t_current->log("INFO", reqid, message);
}
void WWSpecLogDebug(const std::string &reqid, const std::string &message) {
    if (t_current != nullptr) t_current->log("DBG", reqid, message);
}

namespace {
void log_printf(const char *level, const char *reqid, const char *format, va_list args) {
    if (t_current == nullptr || format == nullptr) return;
    va_list copy;
    va_copy(copy, args);
    int n = std::vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    if (n < 0) return;
    std::string line(size_t(n) + 1, '\0');
    std::vsnprintf(&line[0], line.size(), format, args);
    line.resize(size_t(n));
    t_current->log(level, reqid == nullptr ? std::string() : std::string(reqid), line);
}
}  // namespace

void WWSpecLogErrorWithReqId(const char *reqid, const char *format, ...) {
    va_list args;
    va_start(args, format);
    log_printf("ERR", reqid, format, args);
    va_end(args);
}
void WWSpecLogInfoWithReqId(const char *reqid, const char *format, ...) {
    va_list args;
    va_start(args, format);
    log_printf("INFO", reqid, format, args);
    va_end(args);
}
void WWSpecLogDebugWithReqId(const char *reqid, const char *format, ...) {
    va_list args;
    va_start(args, format);
    log_printf("DBG", reqid, format, args);
    va_end(args);
}

}  // namespace WxWork
}  // namespace Tencent
