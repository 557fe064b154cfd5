//! What the benchmarks share: the request they all measure.

/// A Firefox navigation request: 12 header fields, 519 bytes.
pub(crate) const REQUEST: &[u8] = b"GET /articles/sans-io-servers?page=2 HTTP/1.1\r\n\
Host: blog.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://blog.example.com/\r\n\
Cookie: sessionid=8f14e45fceea167a5a36dedd4bea2543\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Cache-Control: max-age=0\r\n\
\r\n";
