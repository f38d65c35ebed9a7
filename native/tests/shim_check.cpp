// The shim's memory and leak check: drives every function of the C ABI (zone_shim.h) over the stub
// SDK, from several threads, under AddressSanitizer, LeakSanitizer and UBSan (native/build.sh --check).
// The WeCom side's requests are sealed with the stub's own codec, compiled into this driver.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cpp_sdk.h"
#include "stub_internal.h"
#include "zone_shim.h"

namespace {

int g_checks = 0;

#define CHECK(cond)                                                             \
    do {                                                                        \
        ++g_checks;                                                             \
        if (!(cond)) {                                                          \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                       \
        }                                                                       \
    } while (0)

const char kToken[] = "CheckToken";
const char kKey[] = "CheckKey0123456789abcdefghijklmnopqrstuvwxy";
const char kCorp[] = "wwcheckcorp";

zone_shim_str s(const std::string &v) { return zone_shim_str{v.data(), v.size()}; }
// Literals get their own overload: a view of a temporary std::string would dangle.
zone_shim_str s(const char *v) { return zone_shim_str{v, std::strlen(v)}; }
std::string str(zone_shim_str v) { return v.len == 0 ? std::string() : std::string(v.ptr, v.len); }

stub::Codec wecom() {
    stub::Bytes key;
    stub::parse_encoding_aes_key(kKey, &key);
    return stub::Codec(kToken, {{1, key}}, 300, 100000);
}

zone_shim *open_shim(const std::string &extra) {
    std::string options = std::string("token=") + kToken + ";key.1=" + kKey + ";" + extra;
    zone_shim *shim = nullptr;
    char *err = nullptr;
    size_t err_len = 0;
    CHECK(zone_shim_new(s(options), &shim, &err, &err_len) == ZONE_SHIM_OK);
    CHECK(shim != nullptr && err == nullptr);
    return shim;
}

int32_t decode(zone_shim *shim, const stub::Sealed &sealed, zone_shim_request **req) {
    std::vector<zone_shim_header> h;
    for (const auto &kv : sealed.headers) h.push_back(zone_shim_header{s(kv.first), s(kv.second)});
    return zone_shim_decode(shim, s("POST"), h.data(), h.size(), s(sealed.body), req);
}

std::string reply_plaintext(stub::Codec &codec, zone_shim_reply *reply, std::string *receive_id) {
    zone_shim_reply_view v{};
    CHECK(zone_shim_reply_parts(reply, &v) == ZONE_SHIM_OK);
    std::map<std::string, std::string> headers;
    for (size_t i = 0; i < v.header_count; ++i) headers.emplace(str(v.headers[i].name), str(v.headers[i].value));
    stub::Opened opened;
    CHECK(codec.open(headers, str(v.body), &opened) == stub::kOk);
    *receive_id = opened.receive_id;
    return opened.message;
}

void round_trip(zone_shim *shim, stub::Codec &codec, int i) {
    std::string data = "data\\u0000with NUL " + std::to_string(i);
    std::string msg = std::string("{\"corp_id\":\"") + kCorp +
                      "\",\"agent_id\":1000002,\"call_type\":1,\"is_async\":true,\"job_info\":\"j\","
                      "\"ability_id\":\"a\",\"notify_id\":\"\",\"data\":\"" + data + "\"}";
    zone_shim_request *req = nullptr;
    CHECK(decode(shim, codec.seal(msg, kCorp), &req) == ZONE_SHIM_OK);
    zone_shim_callback cb{};
    CHECK(zone_shim_request_callback(req, &cb) == ZONE_SHIM_OK);
    CHECK(str(cb.corp_id) == kCorp && cb.agent_id == 1000002 && cb.call_type == 1 && cb.is_async == 1);
    CHECK(str(cb.data) == std::string("data\0with NUL ", 14) + std::to_string(i));
    CHECK(cb.notify_id.len == 0);
    std::string plaintext("{\"errcode\":0}\0tail", 18);
    zone_shim_reply *reply = nullptr;
    CHECK(zone_shim_request_reply(req, s(plaintext), &reply) == ZONE_SHIM_OK);
    zone_shim_request_free(req);  // the reply outlives its request
    std::string rid;
    CHECK(reply_plaintext(codec, reply, &rid) == plaintext && rid == kCorp);
    zone_shim_reply_free(reply);
}

void refusals(zone_shim *shim, stub::Codec &codec) {
    stub::Sealed forged = codec.seal("{}", kCorp);
    forged.headers[3].second = std::string(40, '0');
    zone_shim_request *req = nullptr;
    CHECK(decode(shim, forged, &req) == ZONE_SHIM_E_REJECTED && req != nullptr);
    zone_shim_callback cb{};
    CHECK(zone_shim_request_callback(req, &cb) == ZONE_SHIM_E_REJECTED);
    zone_shim_reply *reply = nullptr;
    CHECK(zone_shim_request_reply(req, s(""), &reply) == ZONE_SHIM_OK);
    std::string rid;
    CHECK(reply_plaintext(codec, reply, &rid).empty() && rid.empty());
    zone_shim_reply_free(reply);
    zone_shim_request_free(req);

    CHECK(zone_shim_decode(shim, s("POST"), nullptr, 0, s("{}"), &req) == ZONE_SHIM_E_NO_HEADERS);
    zone_shim_request_free(req);
    zone_shim_header h{s("ww-nonce"), s("x")};
    CHECK(zone_shim_decode(shim, s(""), &h, 1, s("{}"), &req) == ZONE_SHIM_E_NO_METHOD);
    zone_shim_request_free(req);
    CHECK(zone_shim_decode(shim, s("POST"), &h, 1, s(""), &req) == ZONE_SHIM_E_NO_BODY);
    zone_shim_request_free(req);
    CHECK(zone_shim_decode(shim, s("POST"), nullptr, 3, s("{}"), &req) == ZONE_SHIM_E_ARGUMENT && req == nullptr);
    CHECK(zone_shim_decode(shim, zone_shim_str{nullptr, 4}, &h, 1, s("{}"), &req) == ZONE_SHIM_E_ARGUMENT);
}

int32_t invoke(zone_shim *shim, const std::string &api, std::string *response) {
    std::string req = "{\"limit\":1}";
    zone_shim_invoke_args args{s(kCorp), 1000002, s("invoke_x"), s("job"), s(api), s(req)};
    char *out = nullptr;
    size_t len = 0;
    int32_t ret = zone_shim_invoke(shim, &args, &out, &len);
    CHECK((ret == 0) == (out != nullptr));
    if (out != nullptr) response->assign(out, len);
    zone_shim_string_free(out);
    return ret;
}

// The shapes this build was made with (ZONE_SHIM_CHECK_SHAPES="<invoke> <log>", set by build.sh).
void shapes(int *invoke_shape, int *log_shape) {
    const char *env = std::getenv("ZONE_SHIM_CHECK_SHAPES");
    *invoke_shape = 1;
    *log_shape = 1;
    if (env != nullptr) CHECK(std::sscanf(env, "%d %d", invoke_shape, log_shape) == 2);
}

std::string read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void invokes() {
    int invoke_shape = 0, log_shape = 0;
    shapes(&invoke_shape, &log_shape);
    const char *dir = std::getenv("ZONE_SHIM_CHECK_DIR");
    std::string log_file = std::string(dir == nullptr ? "/tmp" : dir) + "/shim_check.log";
    std::remove(log_file.c_str());
    zone_shim *shim = open_shim(
        "fault.a=ret:-10001;fault.b=ret:-10007;fault.big=bytes:3000000;fault.slow=slow:5,ret:-10006;"
        "zone_url=http://127.0.0.1:1;http_timeout_ms=2000;log_file=" + log_file);
    std::string info = zone_shim_build_info();
    CHECK(info.find(invoke_shape == 2 ? "invoke=request-arg" : "invoke=set-request") != std::string::npos);
    CHECK(info.find(log_shape == 2 ? "log=printf" : "log=string") != std::string::npos);
    uint64_t shape1 = Tencent::WxWork::SpecSDK::CallsOfShape(1), shape2 = Tencent::WxWork::SpecSDK::CallsOfShape(2);
    std::string rsp;
    CHECK(invoke(shim, "a", &rsp) == -10001);
    CHECK(invoke(shim, "b", &rsp) == -10007);
    CHECK(invoke(shim, "slow", &rsp) == -10006);
    CHECK(invoke(shim, "big", &rsp) == 0 && rsp.size() == 3000000 && rsp.compare(0, 11, "{\"errcode\":") == 0);
    CHECK(invoke(shim, "sync_msg", &rsp) == -10006);  // nothing listens on port 1
    CHECK(invoke(shim, "", &rsp) == -10003);
    // Every call went through the shape the build selected, none through the other.
    uint64_t used = invoke_shape == 2 ? Tencent::WxWork::SpecSDK::CallsOfShape(2) - shape2
                                      : Tencent::WxWork::SpecSDK::CallsOfShape(1) - shape1;
    uint64_t other = invoke_shape == 2 ? Tencent::WxWork::SpecSDK::CallsOfShape(1) - shape1
                                       : Tencent::WxWork::SpecSDK::CallsOfShape(2) - shape2;
    CHECK(used == 6 && other == 0);
    zone_shim_invoke_args bad{zone_shim_str{nullptr, 2}, 1, s(""), s(""), s("x"), s("{}")};
    char *out = nullptr;
    size_t len = 0;
    CHECK(zone_shim_invoke(shim, &bad, &out, &len) == ZONE_SHIM_E_ARGUMENT && out == nullptr);
    CHECK(zone_shim_generate_notify_id(shim, &out, &len) == ZONE_SHIM_OK && len == 32);
    zone_shim_string_free(out);
    CHECK(zone_shim_open_debug_mode(shim, s("debug"), s("access")) == ZONE_SHIM_OK);
    CHECK(zone_shim_open_debug_mode(shim, s(""), s("access")) == ZONE_SHIM_E_DEBUG_MODE);
    zone_shim_log(shim, ZONE_SHIM_LOG_INFO, s("req1"), s("a line"));
    // A line full of conversions reaches the log verbatim: it is never used as a format string
    // (under printf shape a `%n` or `%s` here would write memory or read missing varargs: ASan/UBSan).
    std::string hostile = "100% of %s %n %d %x %p %%";
    zone_shim_log(shim, ZONE_SHIM_LOG_ERR, s("req%s"), s(hostile));
    zone_shim_log(shim, ZONE_SHIM_LOG_DBG, s(""), s("debug line"));
    std::string logged = read_file(log_file);
    CHECK(logged.find("INFO [req1] a line\n") != std::string::npos);
    CHECK(logged.find("ERR [req%s] " + hostile + "\n") != std::string::npos);
    CHECK(logged.find("DBG [] debug line\n") != std::string::npos);
    CHECK(zone_shim_sdk_version(shim, &out, &len) == ZONE_SHIM_OK && len > 0);
    CHECK(std::string(out, len).compare(0, 9, "stub-sdk ") == 0);
    zone_shim_string_free(out);
    std::remove(log_file.c_str());
    zone_shim_free(shim);
}

}  // namespace

int main() {
    CHECK(zone_shim_abi_version() == ZONE_SHIM_ABI_VERSION);
    zone_shim *bad = nullptr;
    char *err = nullptr;
    size_t err_len = 0;
    std::string secret_options = "token=SecretTok;key.1=short";
    CHECK(zone_shim_new(s(secret_options), &bad, &err, &err_len) == ZONE_SHIM_E_INIT && bad == nullptr);
    std::string why(err, err_len);
    CHECK(why.find("key.1") != std::string::npos && why.find("short") == std::string::npos);
    zone_shim_string_free(err);

    stub::Codec codec = wecom();
    zone_shim *shim = open_shim("");
    for (int i = 0; i < 200; ++i) round_trip(shim, codec, i);
    refusals(shim, codec);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([shim, &codec, t] {
            for (int i = 0; i < 100; ++i) round_trip(shim, codec, t * 1000 + i);
        });
    for (auto &t : threads) t.join();
    zone_shim_free(shim);
    invokes();
    CHECK(zone_shim_live_objects() == 0);
    std::printf("shim check: ok (%d checks)\n", g_checks);
    return 0;
}
