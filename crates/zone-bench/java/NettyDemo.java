// The Netty peer of `zone-program bench` (BENCHMARKS.md "Netty peer"): a server in the architecture
// of the official Java demo 1.4.0, doing the demos' work per request with the program's local codec.
//
// Architecture: a Netty ServerBootstrap with one acceptor thread and a NioEventLoopGroup of N IO
// threads; each connection's pipeline is HttpServerCodec -> HttpObjectAggregator -> the handler,
// and the handler is added on a DefaultEventExecutorGroup of M business threads
// (`pipeline.addLast(business, handler)`), so that the blocking SDK call never blocks an IO thread.
// The official demo runs 256 + 256; a public zone program runs 4 + 4.
//
// Work per request (as the bench's other baselines do it, crates/zone-bench/src/baselines.rs):
// open the request with the local codec (ww-timestamp within the window, key version known, body
// {"encrypt":"<base64>"}, SHA-1 signature over the sorted [token, timestamp, nonce, encrypt]
// compared in constant time, nonce not seen within the window, AES-256-CBC with IV = the key's first
// 16 bytes, the frame random16 | u32 BE length | msg | receive_id with strict PKCS#7 to 32 bytes, and
// the message's corp_id equal to the receive id), block for the simulated SDK call (sleep), then
// seal a canned reply of the asked size for the corp with the newest key, a fresh nonce and time.
// Only the JDK (javax.crypto, MessageDigest, java.util.Base64) and Netty are used.
//
// The codec's secrets come from the environment, never the command line (which any user can read):
//   NETTY_DEMO_TOKEN  the signing token
//   NETTY_DEMO_KEYS   comma-separated VER:ENCODING_AES_KEY pairs (43-character keys)
// Arguments: --listen HOST:PORT --io-threads N --business-threads M --sdk-latency-us US
//            --reply-bytes B --window-secs S --body-limit BYTES
// GET /healthz answers "ok". A refused request answers 403 {"error":"rejected"}, with no detail.

import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.concurrent.DefaultEventExecutorGroup;
import io.netty.util.concurrent.EventExecutorGroup;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.Base64;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;

import javax.crypto.Cipher;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

public final class NettyDemo {
    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new TreeMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --name value pairs");
            }
            opts.put(args[i].substring(2), args[i + 1]);
        }
        String listen = required(opts, "listen");
        int colon = listen.lastIndexOf(':');
        String host = listen.substring(0, colon);
        int port = Integer.parseInt(listen.substring(colon + 1));
        int ioThreads = Integer.parseInt(required(opts, "io-threads"));
        int businessThreads = Integer.parseInt(required(opts, "business-threads"));
        long sdkLatencyUs = Long.parseLong(required(opts, "sdk-latency-us"));
        int replyBytes = Integer.parseInt(required(opts, "reply-bytes"));
        long windowSecs = Long.parseLong(opts.getOrDefault("window-secs", "300"));
        int bodyLimit = Integer.parseInt(opts.getOrDefault("body-limit", "1048576"));

        Codec codec = Codec.fromEnvironment(windowSecs);
        byte[] reply = paddedReply(replyBytes).getBytes(StandardCharsets.UTF_8);

        EventLoopGroup acceptor = new NioEventLoopGroup(1);
        EventLoopGroup io = new NioEventLoopGroup(ioThreads);
        EventExecutorGroup business = new DefaultEventExecutorGroup(businessThreads);
        try {
            ServerBootstrap bootstrap = new ServerBootstrap()
                .group(acceptor, io)
                .channel(NioServerSocketChannel.class)
                .option(ChannelOption.SO_BACKLOG, 1024)
                .childOption(ChannelOption.TCP_NODELAY, true)
                .childHandler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                        ch.pipeline()
                            .addLast(new HttpServerCodec())
                            .addLast(new HttpObjectAggregator(bodyLimit))
                            .addLast(business, new Handler(codec, sdkLatencyUs, reply));
                    }
                });
            bootstrap.bind(host, port).sync().channel().closeFuture().sync();
        } finally {
            acceptor.shutdownGracefully();
            io.shutdownGracefully();
            business.shutdownGracefully();
        }
    }

    private static String required(Map<String, String> opts, String name) {
        String value = opts.get(name);
        if (value == null) {
            throw new IllegalArgumentException("missing --" + name);
        }
        return value;
    }

    /** {"errcode":0,"errmsg":"ok","pad":"x…"} of `len` bytes (at least the frame). */
    static String paddedReply(int len) {
        String frame = "{\"errcode\":0,\"errmsg\":\"ok\",\"pad\":\"\"}";
        StringBuilder sb = new StringBuilder(Math.max(len, frame.length()));
        sb.append("{\"errcode\":0,\"errmsg\":\"ok\",\"pad\":\"");
        for (int i = frame.length(); i < len; i++) {
            sb.append('x');
        }
        return sb.append("\"}").toString();
    }

    /** The business handler: decode, block for the SDK call, encode. Runs on a business thread. */
    static final class Handler extends SimpleChannelInboundHandler<FullHttpRequest> {
        private final Codec codec;
        private final long sdkLatencyUs;
        private final byte[] reply;

        Handler(Codec codec, long sdkLatencyUs, byte[] reply) {
            this.codec = codec;
            this.sdkLatencyUs = sdkLatencyUs;
            this.reply = reply;
        }

        @Override
        protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest req) throws Exception {
            boolean keepAlive = HttpUtil.isKeepAlive(req);
            if (req.method().equals(HttpMethod.GET) && req.uri().equals("/healthz")) {
                send(ctx, keepAlive, HttpResponseStatus.OK, null, "ok".getBytes(StandardCharsets.US_ASCII));
                return;
            }
            Codec.Opened opened = null;
            if (req.method().equals(HttpMethod.POST)) {
                byte[] body = new byte[req.content().readableBytes()];
                req.content().getBytes(req.content().readerIndex(), body);
                opened = codec.open(
                    req.headers().get("ww-timestamp"),
                    req.headers().get("ww-nonce"),
                    req.headers().get("ww-secret-ver"),
                    req.headers().get("ww-signature"),
                    body);
            }
            if (opened == null) {
                send(ctx, keepAlive, HttpResponseStatus.FORBIDDEN, null,
                    "{\"error\":\"rejected\"}".getBytes(StandardCharsets.US_ASCII));
                return;
            }
            // The demo calls the blocking SDK Invoke on the business thread.
            Thread.sleep(sdkLatencyUs / 1000, (int) (sdkLatencyUs % 1000) * 1000);
            Codec.Sealed sealed = codec.seal(reply, opened.receiveId);
            send(ctx, keepAlive, HttpResponseStatus.OK, sealed.headers, sealed.body);
        }

        private static void send(ChannelHandlerContext ctx, boolean keepAlive, HttpResponseStatus status,
                String[] headers, byte[] body) {
            FullHttpResponse res = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status,
                Unpooled.wrappedBuffer(body));
            res.headers().set(HttpHeaderNames.CONTENT_TYPE, "application/json");
            res.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, body.length);
            if (headers != null) {
                for (int i = 0; i + 1 < headers.length; i += 2) {
                    res.headers().set(headers[i], headers[i + 1]);
                }
            }
            if (keepAlive) {
                res.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.KEEP_ALIVE);
                ctx.writeAndFlush(res);
            } else {
                ctx.writeAndFlush(res).addListener(ChannelFutureListener.CLOSE);
            }
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ctx.close();
        }
    }

    /** The local codec (crates/zone-crypto/src/codec), in Java. */
    static final class Codec {
        private static final byte[] BODY_PREFIX = "{\"encrypt\":\"".getBytes(StandardCharsets.US_ASCII);
        private static final byte[] BODY_SUFFIX = "\"}".getBytes(StandardCharsets.US_ASCII);
        private static final char[] ALNUM =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".toCharArray();
        private static final char[] HEX = "0123456789abcdef".toCharArray();

        private final String token;
        private final TreeMap<Integer, SecretKeySpec> keys;
        private final long windowSecs;
        /** Nonces seen, with the unix second after which each may be forgotten. */
        private final ConcurrentHashMap<String, Long> seen = new ConcurrentHashMap<>();
        private volatile long nextSweep;

        Codec(String token, TreeMap<Integer, SecretKeySpec> keys, long windowSecs) {
            this.token = token;
            this.keys = keys;
            this.windowSecs = windowSecs;
        }

        static Codec fromEnvironment(long windowSecs) {
            String token = System.getenv("NETTY_DEMO_TOKEN");
            String keyList = System.getenv("NETTY_DEMO_KEYS");
            if (token == null || keyList == null) {
                throw new IllegalArgumentException("NETTY_DEMO_TOKEN and NETTY_DEMO_KEYS must be set");
            }
            TreeMap<Integer, SecretKeySpec> keys = new TreeMap<>();
            for (String pair : keyList.split(",")) {
                int colon = pair.indexOf(':');
                String encoded = pair.substring(colon + 1);
                if (colon < 1 || encoded.length() != 43) {
                    throw new IllegalArgumentException("NETTY_DEMO_KEYS: expected VER:KEY with a 43-character key");
                }
                // AESKey = Base64Decode(EncodingAESKey + "="); the last character's two spare bits
                // are ignored, as WeCom's libraries do.
                byte[] key = Base64.getDecoder().decode(encoded + "=");
                keys.put(Integer.parseInt(pair.substring(0, colon)), new SecretKeySpec(key, "AES"));
            }
            return new Codec(token, keys, windowSecs);
        }

        static final class Opened {
            final String receiveId;

            Opened(String receiveId) {
                this.receiveId = receiveId;
            }
        }

        static final class Sealed {
            final String[] headers;
            final byte[] body;

            Sealed(String[] headers, byte[] body) {
                this.headers = headers;
                this.body = body;
            }
        }

        /** Verifies and opens a sealed request; null when it is refused (for whatever reason). */
        Opened open(String ts, String nonce, String ver, String signature, byte[] body) {
            try {
                if (ts == null || nonce == null || ver == null || signature == null) {
                    return null;
                }
                if (nonce.isEmpty() || nonce.length() > 32 || !nonce.chars().allMatch(Codec::isAlnum)) {
                    return null;
                }
                long timestamp = Long.parseLong(ts);
                long now = System.currentTimeMillis() / 1000;
                if (Math.abs(now - timestamp) > windowSecs) {
                    return null;
                }
                SecretKeySpec key = keys.get(Integer.parseInt(ver));
                if (key == null) {
                    return null;
                }
                if (!startsWith(body, BODY_PREFIX) || !endsWith(body, BODY_SUFFIX)) {
                    return null;
                }
                String encrypt = new String(body, BODY_PREFIX.length,
                    body.length - BODY_PREFIX.length - BODY_SUFFIX.length, StandardCharsets.US_ASCII);
                byte[] expected = sign(ts, nonce, encrypt).getBytes(StandardCharsets.US_ASCII);
                if (!MessageDigest.isEqual(expected, signature.getBytes(StandardCharsets.US_ASCII))) {
                    return null;
                }
                // Only a correctly signed message occupies the replay cache, until ts + window.
                if (seen.putIfAbsent(nonce, timestamp + windowSecs) != null) {
                    return null;
                }
                sweep(now);
                byte[] plain = cipher(Cipher.DECRYPT_MODE, key).doFinal(Base64.getDecoder().decode(encrypt));
                int padLen = plain.length == 0 ? 0 : plain[plain.length - 1] & 0xff;
                if (padLen < 1 || padLen > 32 || padLen > plain.length) {
                    return null;
                }
                for (int i = plain.length - padLen; i < plain.length; i++) {
                    if ((plain[i] & 0xff) != padLen) {
                        return null;
                    }
                }
                int end = plain.length - padLen;
                if (end < 20) {
                    return null;
                }
                int len = ByteBuffer.wrap(plain, 16, 4).getInt();
                if (len < 0 || len > end - 20) {
                    return null;
                }
                String message = new String(plain, 20, len, StandardCharsets.UTF_8);
                String receiveId = new String(plain, 20 + len, end - 20 - len, StandardCharsets.UTF_8);
                if (!receiveId.equals(corpId(message))) {
                    return null;
                }
                return new Opened(receiveId);
            } catch (Exception e) {
                return null;
            }
        }

        /** Seals `message` for `receiveId` with the newest key, a fresh nonce and the current time. */
        Sealed seal(byte[] message, String receiveId) throws Exception {
            Map.Entry<Integer, SecretKeySpec> newest = keys.lastEntry();
            ThreadLocalRandom rng = ThreadLocalRandom.current();
            byte[] rid = receiveId.getBytes(StandardCharsets.UTF_8);
            int unpadded = 20 + message.length + rid.length;
            int pad = 32 - unpadded % 32;
            byte[] frame = new byte[unpadded + pad];
            byte[] random = new byte[16];
            rng.nextBytes(random);
            System.arraycopy(random, 0, frame, 0, 16);
            ByteBuffer.wrap(frame, 16, 4).putInt(message.length);
            System.arraycopy(message, 0, frame, 20, message.length);
            System.arraycopy(rid, 0, frame, 20 + message.length, rid.length);
            Arrays.fill(frame, unpadded, frame.length, (byte) pad);
            String encrypt = Base64.getEncoder().encodeToString(cipher(Cipher.ENCRYPT_MODE, newest.getValue())
                .doFinal(frame));
            String ts = Long.toString(System.currentTimeMillis() / 1000);
            char[] nonceChars = new char[16];
            for (int i = 0; i < nonceChars.length; i++) {
                nonceChars[i] = ALNUM[rng.nextInt(ALNUM.length)];
            }
            String nonce = new String(nonceChars);
            byte[] body = new byte[BODY_PREFIX.length + encrypt.length() + BODY_SUFFIX.length];
            System.arraycopy(BODY_PREFIX, 0, body, 0, BODY_PREFIX.length);
            byte[] enc = encrypt.getBytes(StandardCharsets.US_ASCII);
            System.arraycopy(enc, 0, body, BODY_PREFIX.length, enc.length);
            System.arraycopy(BODY_SUFFIX, 0, body, BODY_PREFIX.length + enc.length, BODY_SUFFIX.length);
            String[] headers = {
                "ww-timestamp", ts,
                "ww-nonce", nonce,
                "ww-secret-ver", Integer.toString(newest.getKey()),
                "ww-signature", sign(ts, nonce, encrypt),
            };
            return new Sealed(headers, body);
        }

        /** Lowercase hex SHA-1 of the sorted concatenation of [token, timestamp, nonce, encrypt]. */
        private String sign(String ts, String nonce, String encrypt) throws Exception {
            String[] parts = {token, ts, nonce, encrypt};
            Arrays.sort(parts);
            MessageDigest sha1 = MessageDigest.getInstance("SHA-1");
            for (String part : parts) {
                sha1.update(part.getBytes(StandardCharsets.UTF_8));
            }
            byte[] digest = sha1.digest();
            char[] hex = new char[digest.length * 2];
            for (int i = 0; i < digest.length; i++) {
                hex[2 * i] = HEX[(digest[i] >> 4) & 0xf];
                hex[2 * i + 1] = HEX[digest[i] & 0xf];
            }
            return new String(hex);
        }

        /** A Cipher per call, as the official demo's WXBizMsgCrypt makes one (it is not thread-safe). */
        private static Cipher cipher(int mode, SecretKeySpec key) throws Exception {
            Cipher cipher = Cipher.getInstance("AES/CBC/NoPadding");
            cipher.init(mode, key, new IvParameterSpec(key.getEncoded(), 0, 16));
            return cipher;
        }

        /** Forgets expired nonces, at most once a second (one thread at a time does it). */
        private void sweep(long now) {
            long next = nextSweep;
            if (now < next) {
                return;
            }
            synchronized (this) {
                if (now < nextSweep) {
                    return;
                }
                nextSweep = now + 1;
            }
            seen.values().removeIf(expiry -> expiry < now);
        }

        /**
         * The message's "corp_id" string. The demo parses the message with a JSON library; a scan for
         * the one field it checks does less work than that, which only favours this peer.
         */
        private static String corpId(String message) {
            String key = "\"corp_id\":\"";
            int at = message.indexOf(key);
            if (at < 0) {
                return null;
            }
            int from = at + key.length();
            int to = message.indexOf('"', from);
            return to < 0 ? null : message.substring(from, to);
        }

        private static boolean isAlnum(int c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        }

        private static boolean startsWith(byte[] body, byte[] prefix) {
            return body.length >= prefix.length && Arrays.equals(body, 0, prefix.length, prefix, 0, prefix.length);
        }

        private static boolean endsWith(byte[] body, byte[] suffix) {
            int from = body.length - suffix.length;
            return from >= 0 && Arrays.equals(body, from, body.length, suffix, 0, suffix.length);
        }
    }
}
