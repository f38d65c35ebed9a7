// A minimal blocking HTTP/1.1 client for the stub SDK's Invoke: one request per connection
// ("Connection: close"), plain http only, bounded by a timeout and a response size cap.
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "stub_internal.h"

namespace stub {
namespace {

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left > 0 ? int(left) : 0;
}

bool wait_for(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) return false;
    }
}

bool connect_to(const std::string &host, const std::string &port, Clock::time_point deadline, Fd *out,
                std::string *error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo *res = nullptr;
    if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
        *error = "cannot resolve the zone host";
        return false;
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
    for (addrinfo *ai = res; ai != nullptr; ai = ai->ai_next) {
        Fd fd;
        fd.fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd.fd < 0) continue;
        int r = ::connect(fd.fd, ai->ai_addr, ai->ai_addrlen);
        if (r != 0 && errno != EINPROGRESS) continue;
        if (r != 0) {
            if (!wait_for(fd.fd, POLLOUT, deadline)) continue;
            int err = 0;
            socklen_t len = sizeof err;
            if (::getsockopt(fd.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) continue;
        }
        std::swap(out->fd, fd.fd);
        return true;
    }
    *error = "cannot connect to the zone";
    return false;
}

bool send_all(int fd, const std::string &data, Clock::time_point deadline) {
    size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += size_t(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_for(fd, POLLOUT, deadline)) return false;
        } else {
            return false;
        }
    }
    return true;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

std::string trim(const std::string &s) {
    size_t b = s.find_first_not_of(" \t");
    size_t e = s.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

bool dechunk(const std::string &in, std::string *out) {
    size_t p = 0;
    for (;;) {
        size_t eol = in.find("\r\n", p);
        if (eol == std::string::npos) return false;
        size_t size = 0;
        try {
            size = std::stoul(in.substr(p, eol - p), nullptr, 16);
        } catch (...) {
            return false;
        }
        p = eol + 2;
        if (size == 0) return true;
        if (p + size + 2 > in.size()) return false;
        out->append(in, p, size);
        p += size + 2;
    }
}

}  // namespace

bool http_post(const std::string &url, const std::string &path, const HeaderList &headers, const std::string &body,
               int timeout_ms, size_t max_bytes, HttpResponse *out, std::string *error) {
    const std::string scheme = "http://";
    if (url.compare(0, scheme.size(), scheme) != 0) {
        *error = "only http:// zone URLs are supported by the stub";
        return false;
    }
    std::string rest = url.substr(scheme.size());
    size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    std::string prefix = slash == std::string::npos ? std::string() : rest.substr(slash);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    size_t colon = authority.rfind(':');
    std::string host = colon == std::string::npos ? authority : authority.substr(0, colon);
    std::string port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    Fd fd;
    if (!connect_to(host, port, deadline, &fd, error)) return false;
    std::string req = "POST " + prefix + path + " HTTP/1.1\r\nHost: " + authority +
                      "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\n";
    for (const auto &h : headers) req += h.first + ": " + h.second + "\r\n";
    req += "\r\n";
    req += body;
    if (!send_all(fd.fd, req, deadline)) {
        *error = "sending to the zone failed";
        return false;
    }
    std::string raw;
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd.fd, buf, sizeof buf, 0);
        if (n > 0) {
            raw.append(buf, size_t(n));
            if (raw.size() > max_bytes + 65536) {
                *error = "the zone's response is too large";
                return false;
            }
        } else if (n == 0) {
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            if (!wait_for(fd.fd, POLLIN, deadline)) {
                *error = "the zone did not answer in time";
                return false;
            }
        } else {
            *error = "receiving from the zone failed";
            return false;
        }
    }
    size_t head_end = raw.find("\r\n\r\n");
    if (head_end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) {
        *error = "the zone's response is not HTTP";
        return false;
    }
    size_t sp = raw.find(' ');
    out->status = std::atoi(raw.c_str() + sp + 1);
    size_t line = raw.find("\r\n") + 2;
    while (line < head_end) {
        size_t eol = raw.find("\r\n", line);
        std::string h = raw.substr(line, eol - line);
        size_t c = h.find(':');
        if (c != std::string::npos) out->headers.emplace(lower(h.substr(0, c)), trim(h.substr(c + 1)));
        line = eol + 2;
    }
    std::string payload = raw.substr(head_end + 4);
    auto te = out->headers.find("transfer-encoding");
    if (te != out->headers.end() && lower(te->second).find("chunked") != std::string::npos) {
        if (!dechunk(payload, &out->body)) {
            *error = "the zone's chunked body is malformed";
            return false;
        }
    } else {
        auto cl = out->headers.find("content-length");
        if (cl != out->headers.end()) {
            size_t n = size_t(std::strtoull(cl->second.c_str(), nullptr, 10));
            if (n > payload.size()) {
                *error = "the zone's body is truncated";
                return false;
            }
            payload.resize(n);
        }
        out->body = std::move(payload);
    }
    if (out->body.size() > max_bytes) {
        *error = "the zone's response is too large";
        return false;
    }
    return true;
}

}  // namespace stub
