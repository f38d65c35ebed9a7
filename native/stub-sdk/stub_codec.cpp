// The local codec of the stub SDK, byte for byte the one in src/codec.rs and src/crypto: headers
// ww-timestamp / ww-nonce / ww-secret-ver / ww-signature, body {"encrypt":"<base64>"}, the WeCom
// callback cipher (AES-256-CBC, IV = first 16 key bytes, PKCS#7 to 32-byte blocks, frame
// random16 | u32 BE length | msg | receive_id), SHA1 over the sorted [token, timestamp, nonce,
// encrypt], a +-window on the timestamp and a bounded nonce replay cache.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <chrono>
#include <stdexcept>

#include "stub_internal.h"

namespace stub {
namespace {

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Decodes padded standard base64; `lenient_tail` accepts non-zero unused bits in the last symbol.
bool b64_decode(const std::string &in, bool lenient_tail, Bytes *out) {
    if (in.size() % 4 != 0) return false;
    out->clear();
    out->reserve(in.size() / 4 * 3);
    for (size_t i = 0; i < in.size(); i += 4) {
        bool last = i + 4 == in.size();
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            unsigned char c = static_cast<unsigned char>(in[i + k]);
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                ++pad;
            } else if (pad > 0 || (v[k] = b64_value(c)) < 0) {
                return false;
            }
        }
        uint32_t n = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
        if (!lenient_tail && ((pad == 1 && (n & 0xff)) || (pad == 2 && (n & 0xffff)))) return false;
        out->push_back(char(n >> 16));
        if (pad < 2) out->push_back(char((n >> 8) & 0xff));
        if (pad < 1) out->push_back(char(n & 0xff));
    }
    return true;
}

// AES-256-CBC without padding (the frame is already padded to 32 bytes) over whole blocks.
bool aes_cbc(bool encrypt, const Bytes &key, const Bytes &in, Bytes *out) {
    std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    if (!ctx) throw std::bad_alloc();
    const unsigned char *k = reinterpret_cast<const unsigned char *>(key.data());
    if (EVP_CipherInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr, k, k, encrypt ? 1 : 0) != 1) return false;
    EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
    out->assign(in.size() + 16, '\0');
    int n = 0, tail = 0;
    unsigned char *o = reinterpret_cast<unsigned char *>(&(*out)[0]);
    if (EVP_CipherUpdate(ctx.get(), o, &n, reinterpret_cast<const unsigned char *>(in.data()), int(in.size())) != 1)
        return false;
    if (EVP_CipherFinal_ex(ctx.get(), o + n, &tail) != 1) return false;
    out->resize(size_t(n + tail));
    return true;
}

bool parse_decimal(const std::string &raw, bool allow_negative, int64_t *out) {
    size_t start = (allow_negative && !raw.empty() && raw[0] == '-') ? 1 : 0;
    size_t digits = raw.size() - start;
    if (digits == 0 || digits > 19) return false;
    for (size_t i = start; i < raw.size(); ++i)
        if (raw[i] < '0' || raw[i] > '9') return false;
    try {
        *out = std::stoll(raw);
    } catch (...) {
        return false;
    }
    return true;
}

bool is_nonce(const std::string &n) {
    if (n.empty() || n.size() > 32) return false;
    return std::all_of(n.begin(), n.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; });
}

std::string signature(const std::string &token, const std::string &ts, const std::string &nonce,
                      const std::string &encrypt) {
    std::array<std::string, 4> parts = {token, ts, nonce, encrypt};
    std::sort(parts.begin(), parts.end());
    return sha1_hex(parts[0] + parts[1] + parts[2] + parts[3]);
}

}  // namespace

std::string base64_encode(const Bytes &in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    for (size_t i = 0; i < in.size(); i += 3) {
        uint32_t n = uint32_t(uint8_t(in[i])) << 16;
        if (i + 1 < in.size()) n |= uint32_t(uint8_t(in[i + 1])) << 8;
        if (i + 2 < in.size()) n |= uint32_t(uint8_t(in[i + 2]));
        out.push_back(kB64[(n >> 18) & 63]);
        out.push_back(kB64[(n >> 12) & 63]);
        out.push_back(i + 1 < in.size() ? kB64[(n >> 6) & 63] : '=');
        out.push_back(i + 2 < in.size() ? kB64[n & 63] : '=');
    }
    return out;
}

bool base64_decode(const std::string &in, Bytes *out) { return b64_decode(in, false, out); }

bool parse_encoding_aes_key(const std::string &encoded, Bytes *key) {
    if (encoded.size() != 43) return false;
    for (char c : encoded)
        if (!std::isalnum(static_cast<unsigned char>(c))) return false;
    return b64_decode(encoded + "=", true, key) && key->size() == 32;
}

std::string sha1_hex(const std::string &in) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(in.data(), in.size(), md, &len, EVP_sha1(), nullptr) != 1) throw std::runtime_error("sha1");
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

Bytes random_bytes(size_t n) {
    Bytes out(n, '\0');
    if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char *>(&out[0]), int(n)) != 1) throw std::runtime_error("rand");
    return out;
}

std::string random_alnum(size_t n) {
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::string out;
    while (out.size() < n) {
        for (char b : random_bytes(n)) {
            unsigned char v = static_cast<unsigned char>(b);
            if (v < 248 && out.size() < n) out.push_back(alnum[v % 62]);  // 248 = 4 * 62: no bias
        }
    }
    return out;
}

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Codec::Codec(std::string token, std::map<uint32_t, Bytes> keys, int64_t window_secs, size_t nonce_capacity)
    : token_(std::move(token)), keys_(std::move(keys)), window_(window_secs), capacity_(nonce_capacity) {}

Sealed Codec::seal(const Bytes &message, const std::string &receive_id) const {
    const auto &newest = *keys_.rbegin();
    Bytes frame = random_bytes(16);
    uint32_t len = static_cast<uint32_t>(message.size());
    for (int shift = 24; shift >= 0; shift -= 8) frame.push_back(char((len >> shift) & 0xff));
    frame += message;
    frame += receive_id;
    size_t pad = 32 - frame.size() % 32;
    frame.append(pad, char(pad));
    Bytes cipher;
    if (!aes_cbc(true, newest.second, frame, &cipher)) throw std::runtime_error("encrypt");
    std::string encrypt = base64_encode(cipher);
    std::string ts = std::to_string(unix_now());
    std::string nonce = random_alnum(16);
    Sealed s;
    s.headers = {{"ww-timestamp", ts},
                 {"ww-nonce", nonce},
                 {"ww-secret-ver", std::to_string(newest.first)},
                 {"ww-signature", signature(token_, ts, nonce, encrypt)}};
    s.body = "{\"encrypt\":" + json_quote(encrypt) + "}";
    return s;
}

int Codec::open(const std::map<std::string, std::string> &headers, const std::string &body, Opened *out) {
    const char *names[] = {"ww-timestamp", "ww-nonce", "ww-secret-ver", "ww-signature"};
    const std::string *v[4];
    for (int i = 0; i < 4; ++i) {
        auto it = headers.find(names[i]);
        if (it == headers.end()) return kMissingHeader;
        v[i] = &it->second;
    }
    if (!is_nonce(*v[1])) return kMalformedHeader;
    int64_t ts = 0, ver = 0;
    if (!parse_decimal(*v[0], true, &ts)) return kMalformedHeader;
    if (!parse_decimal(*v[2], false, &ver) || ver > 0xffffffffLL) return kMalformedHeader;
    int64_t now = unix_now();
    if (std::llabs(now - ts) > window_) return kStale;
    auto key = keys_.find(static_cast<uint32_t>(ver));
    if (key == keys_.end()) return kUnknownKeyVersion;
    Json doc;
    if (!json_parse(body, &doc) || doc.kind != Json::kObject || doc.members.size() != 1 ||
        doc.members[0].first != "encrypt" || doc.members[0].second.kind != Json::kString)
        return kMalformedBody;
    const std::string &encrypt = doc.members[0].second.s;
    std::string given = *v[3];
    std::transform(given.begin(), given.end(), given.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    std::string expected = signature(token_, *v[0], *v[1], encrypt);
    if (given.size() != expected.size() || CRYPTO_memcmp(given.data(), expected.data(), given.size()) != 0)
        return kValidateSignature;
    int seen = remember(*v[1], now);  // only a correctly signed message may occupy the cache
    if (seen != kOk) return seen;
    Bytes cipher, plain;
    if (!base64_decode(encrypt, &cipher)) return kDecodeBase64;
    if (cipher.empty() || cipher.size() % 16 != 0) return kDecryptAes;
    if (!aes_cbc(false, key->second, cipher, &plain)) return kDecryptAes;
    unsigned char pad = plain.empty() ? 0 : static_cast<unsigned char>(plain.back());
    if (pad == 0 || pad > 32 || pad > plain.size()) return kIllegalBuffer;
    for (size_t i = plain.size() - pad; i < plain.size(); ++i)
        if (static_cast<unsigned char>(plain[i]) != pad) return kIllegalBuffer;
    plain.resize(plain.size() - pad);
    if (plain.size() < 20) return kIllegalBuffer;
    uint32_t len = 0;
    for (int i = 16; i < 20; ++i) len = (len << 8) | static_cast<unsigned char>(plain[i]);
    if (len > plain.size() - 20) return kIllegalBuffer;
    out->message = plain.substr(20, len);
    out->receive_id = plain.substr(20 + len);
    return kOk;
}

int Codec::remember(const std::string &nonce, int64_t now) {
    std::lock_guard<std::mutex> lock(mu_);
    while (!order_.empty() && order_.front().first <= now) {
        live_.erase(order_.front().second);
        order_.pop_front();
    }
    if (live_.count(nonce) != 0) return kReplayed;
    if (live_.size() >= capacity_) return kReplayCacheFull;
    live_.insert(nonce);
    order_.emplace_back(now + 2 * window_, nonce);
    return kOk;
}

}  // namespace stub
