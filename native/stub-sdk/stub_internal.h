// Internals of the stub SDK (tests and CI only): the local codec, a minimal JSON reader/writer and a
// minimal HTTP/1.1 client. None of this is WeCom's wire format; see cpp_sdk.h.
#ifndef WWSPEC_STUB_INTERNAL_H
#define WWSPEC_STUB_INTERNAL_H

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

namespace stub {

using Bytes = std::string;
using HeaderList = std::vector<std::pair<std::string, std::string>>;

// ---- Codes (the same numbers as src/codec.rs and src/crypto) ----
enum Code : int {
    kOk = 0,
    kValidateSignature = -40001,
    kValidateReceiveId = -40005,
    kDecryptAes = -40007,
    kIllegalBuffer = -40008,
    kDecodeBase64 = -40010,
    kMissingHeader = -41001,
    kMalformedHeader = -41002,
    kStale = -41003,
    kUnknownKeyVersion = -41004,
    kReplayed = -41005,
    kReplayCacheFull = -41006,
    kMalformedBody = -41007,
    kBadMessage = -41010,
};

// ---- Primitives (OpenSSL 3) ----
std::string base64_encode(const Bytes &in);
// Strict standard base64 with padding; false on anything else.
bool base64_decode(const std::string &in, Bytes *out);
// 43 characters of [A-Za-z0-9] -> 32 key bytes (trailing bits ignored, as WeCom's libraries do).
bool parse_encoding_aes_key(const std::string &encoded, Bytes *key);
std::string sha1_hex(const std::string &in);
Bytes random_bytes(size_t n);
std::string random_alnum(size_t n);
int64_t unix_now();

// ---- The local codec ----
struct Sealed {
    HeaderList headers;  // ww-timestamp, ww-nonce, ww-secret-ver, ww-signature
    std::string body;    // {"encrypt":"..."}
};

struct Opened {
    Bytes message;
    std::string receive_id;
};

class Codec {
public:
    Codec(std::string token, std::map<uint32_t, Bytes> keys, int64_t window_secs, size_t nonce_capacity);
    Sealed seal(const Bytes &message, const std::string &receive_id) const;
    // Verifies and opens; returns kOk or a code. `header` finds a header by exact lower-case name.
    int open(const std::map<std::string, std::string> &headers, const std::string &body, Opened *out);

private:
    int remember(const std::string &nonce, int64_t now);

    std::string token_;
    std::map<uint32_t, Bytes> keys_;
    int64_t window_;
    size_t capacity_;
    std::mutex mu_;
    std::unordered_set<std::string> live_;
    std::deque<std::pair<int64_t, std::string>> order_;
};

// ---- Minimal JSON ----
struct Json {
    enum Kind { kNull, kBool, kInt, kFloat, kString, kArray, kObject } kind = kNull;
    bool b = false;
    int64_t i = 0;
    std::string s;
    std::vector<Json> items;
    std::vector<std::pair<std::string, Json>> members;  // in document order, duplicates kept
};

// Parses one JSON document. Strings may carry any bytes >= 0x20 (UTF-8 is NOT checked: like a C++
// SDK handing back std::string, the stub leaves that to its caller). False on a syntax error.
bool json_parse(const std::string &text, Json *out);
// A JSON string literal for `s` (quotes included).
std::string json_quote(const std::string &s);

// ---- Minimal HTTP/1.1 client (plain http only) ----
struct HttpResponse {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
};

// POSTs `body` to `url` (http://host:port[/prefix] + path). False (with `error`) on a transport failure,
// a timeout or a response over `max_bytes`.
bool http_post(const std::string &url, const std::string &path, const HeaderList &headers, const std::string &body,
               int timeout_ms, size_t max_bytes, HttpResponse *out, std::string *error);

}  // namespace stub

#endif  // WWSPEC_STUB_INTERNAL_H
