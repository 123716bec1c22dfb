package tlsconf

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// RedirectHandler returns the handler of the plain-HTTP port (control
// NET-1): it serves nothing, and answers every request with
// 308 Permanent Redirect to https://host:httpsPort/path?query. 308 is used
// for every method because, unlike 301, it forbids clients to turn a POST
// into a GET; the request body is never read nor echoed, and the response
// has no body.
//
// host is the request's Host header without its port; a missing Host, or
// one that is neither an IP address nor a DNS name of letters, digits,
// hyphens and dots, gets 400 Bad Request. The port is left out of the
// location when httpsPort is "443" or empty. Strict-Transport-Security is
// not set: RFC 6797 section 7.2 forbids it on plain HTTP, where an attacker
// could forge it; the HTTPS responses carry it.
//
// RedirectHandler panics if httpsPort is neither empty nor a decimal port
// number from 1 to 65535, like http.Handle with a bad pattern: validate the
// configuration before.
func RedirectHandler(httpsPort string) http.Handler {
	suffix := ""
	if httpsPort != "" && httpsPort != "443" {
		n, err := strconv.Atoi(httpsPort)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != httpsPort {
			panic(fmt.Sprintf("tlsconf.RedirectHandler: HTTPS port %q is not a port number from 1 to 65535; fix the configured HTTPS listen address", httpsPort))
		}
		suffix = ":" + httpsPort
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, ok := redirectHost(r.Host)
		if !ok {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("400 Bad Request: invalid Host header\n"))
			return
		}
		target := r.URL.EscapedPath()
		if !strings.HasPrefix(target, "/") {
			target = "/" + target // "OPTIONS *" and the like
		}
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", "https://"+host+suffix+target)
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// redirectHost returns the host part of a Host header, ready to put in a
// URL (IPv6 in brackets, names in lower case), and whether it is valid.
func redirectHost(hostport string) (string, bool) {
	host := hostport
	if h, port, err := net.SplitHostPort(hostport); err == nil {
		if port != "" {
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return "", false
			}
		}
		host = h
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", false
		}
		if ip.Is6() && !ip.Is4In6() {
			return "[" + ip.String() + "]", true
		}
		return ip.Unmap().String(), true
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if !validDNSName(name, false) {
		return "", false
	}
	return name, true
}
