// A minimal JSON reader and string quoting for the stub SDK: enough for the local codec's messages.
#include <cstdio>

#include "stub_internal.h"

namespace stub {
namespace {

const int kMaxDepth = 64;

class Parser {
public:
    explicit Parser(const std::string &t) : t_(t) {}

    bool document(Json *out) {
        ws();
        if (!value(out, 0)) return false;
        ws();
        return p_ == t_.size();
    }

private:
    void ws() {
        while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r')) ++p_;
    }

    bool eat(char c) {
        if (p_ < t_.size() && t_[p_] == c) {
            ++p_;
            return true;
        }
        return false;
    }

    bool literal(const char *word) {
        size_t n = std::char_traits<char>::length(word);
        if (t_.compare(p_, n, word) != 0) return false;
        p_ += n;
        return true;
    }

    bool value(Json *out, int depth) {
        if (depth > kMaxDepth || p_ >= t_.size()) return false;
        char c = t_[p_];
        if (c == '{') return object(out, depth);
        if (c == '[') return array(out, depth);
        if (c == '"') {
            out->kind = Json::kString;
            return string(&out->s);
        }
        if (c == 't' || c == 'f') {
            out->kind = Json::kBool;
            out->b = c == 't';
            return literal(c == 't' ? "true" : "false");
        }
        if (c == 'n') {
            out->kind = Json::kNull;
            return literal("null");
        }
        return number(out);
    }

    bool object(Json *out, int depth) {
        out->kind = Json::kObject;
        ++p_;
        ws();
        if (eat('}')) return true;
        for (;;) {
            ws();
            std::string key;
            if (p_ >= t_.size() || t_[p_] != '"' || !string(&key)) return false;
            ws();
            if (!eat(':')) return false;
            ws();
            Json v;
            if (!value(&v, depth + 1)) return false;
            out->members.emplace_back(std::move(key), std::move(v));
            ws();
            if (eat('}')) return true;
            if (!eat(',')) return false;
        }
    }

    bool array(Json *out, int depth) {
        out->kind = Json::kArray;
        ++p_;
        ws();
        if (eat(']')) return true;
        for (;;) {
            ws();
            Json v;
            if (!value(&v, depth + 1)) return false;
            out->items.push_back(std::move(v));
            ws();
            if (eat(']')) return true;
            if (!eat(',')) return false;
        }
    }

    bool hex4(uint32_t *out) {
        if (p_ + 4 > t_.size()) return false;
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            char c = t_[p_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
            else return false;
        }
        *out = v;
        return true;
    }

    static void utf8(uint32_t cp, std::string *out) {
        if (cp < 0x80) {
            out->push_back(char(cp));
        } else if (cp < 0x800) {
            out->push_back(char(0xc0 | (cp >> 6)));
            out->push_back(char(0x80 | (cp & 0x3f)));
        } else if (cp < 0x10000) {
            out->push_back(char(0xe0 | (cp >> 12)));
            out->push_back(char(0x80 | ((cp >> 6) & 0x3f)));
            out->push_back(char(0x80 | (cp & 0x3f)));
        } else {
            out->push_back(char(0xf0 | (cp >> 18)));
            out->push_back(char(0x80 | ((cp >> 12) & 0x3f)));
            out->push_back(char(0x80 | ((cp >> 6) & 0x3f)));
            out->push_back(char(0x80 | (cp & 0x3f)));
        }
    }

    bool string(std::string *out) {
        ++p_;  // opening quote
        for (;;) {
            if (p_ >= t_.size()) return false;
            unsigned char c = static_cast<unsigned char>(t_[p_++]);
            if (c == '"') return true;
            if (c < 0x20) return false;
            if (c != '\\') {
                out->push_back(char(c));
                continue;
            }
            if (p_ >= t_.size()) return false;
            char e = t_[p_++];
            switch (e) {
                case '"': out->push_back('"'); break;
                case '\\': out->push_back('\\'); break;
                case '/': out->push_back('/'); break;
                case 'b': out->push_back('\b'); break;
                case 'f': out->push_back('\f'); break;
                case 'n': out->push_back('\n'); break;
                case 'r': out->push_back('\r'); break;
                case 't': out->push_back('\t'); break;
                case 'u': {
                    uint32_t cp = 0;
                    if (!hex4(&cp)) return false;
                    if (cp >= 0xdc00 && cp <= 0xdfff) return false;  // lone trailing surrogate
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        uint32_t lo = 0;
                        if (!literal("\\u") || !hex4(&lo) || lo < 0xdc00 || lo > 0xdfff) return false;
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    }
                    utf8(cp, out);
                    break;
                }
                default: return false;
            }
        }
    }

    bool digits() {
        size_t start = p_;
        while (p_ < t_.size() && t_[p_] >= '0' && t_[p_] <= '9') ++p_;
        return p_ > start;
    }

    bool number(Json *out) {
        size_t start = p_;
        eat('-');
        if (p_ >= t_.size()) return false;
        if (t_[p_] == '0') {
            ++p_;
        } else if (!digits()) {
            return false;
        }
        bool integral = true;
        if (eat('.')) {
            integral = false;
            if (!digits()) return false;
        }
        if (p_ < t_.size() && (t_[p_] == 'e' || t_[p_] == 'E')) {
            integral = false;
            ++p_;
            if (!eat('+')) eat('-');
            if (!digits()) return false;
        }
        std::string text = t_.substr(start, p_ - start);
        out->kind = Json::kFloat;
        if (integral) {
            try {
                size_t used = 0;
                long long v = std::stoll(text, &used);
                if (used == text.size()) {
                    out->kind = Json::kInt;
                    out->i = v;
                }
            } catch (...) {
                // out of range: stays a float, which no integer field accepts
            }
        }
        return true;
    }

    const std::string &t_;
    size_t p_ = 0;
};

}  // namespace

bool json_parse(const std::string &text, Json *out) {
    *out = Json();
    return Parser(text).document(out);
}

std::string json_quote(const std::string &s) {
    std::string out;
    out.reserve(s.size() + 2);
    out.push_back('"');
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(char(c));
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out.push_back(char(c));
        }
    }
    out.push_back('"');
    return out;
}

}  // namespace stub
