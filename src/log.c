/*
 * log.c - the process-wide log sink: text or JSON lines to stderr or a file.
 *
 * Text:  2026-01-02 03:04:05.678 UTC [pid] LEVEL C-12 app/alice@127.0.0.1:5000 message k=v
 * JSON:  {"ts":"...","pid":1,"level":"info","conn":"C-12","db":"app",...,"msg":"..."}
 *
 * The sink is the one piece of process-wide mutable state outside the loop
 * context: it is set before the loops start and on reload, and every line is
 * one write(2), which is atomic for regular files opened with O_APPEND.
 */
#include "sluice/log.h"
#include "sluice/syslog_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_threshold = LOG_INFO;

static int log_fd = STDERR_FILENO;
static bool log_json;
static bool log_to_syslog;

static const char *const level_names[] = {"ERROR", "WARNING", "LOG", "DEBUG", "NOISE"};
static const char *const level_json[] = {"error", "warning", "info", "debug", "noise"};

int log_open(const char *path, bool json, int verbose)
{
	int fd = STDERR_FILENO;

	if (path && path[0]) {
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	log_json = json;
	log_threshold = LOG_INFO + (verbose < 0 ? 0 : verbose);
	if (log_threshold > LOG_NOISE)
		log_threshold = LOG_NOISE;
	return 0;
}

void log_syslog(bool on, const char *ident, int facility_index)
{
	if (on)
		syslog_sink_open(ident, facility_index);
	else if (log_to_syslog)
		syslog_sink_close();
	log_to_syslog = on;
}

bool log_json_enabled(void)
{
	return log_json;
}

void log_close(void)
{
	if (log_to_syslog)
		syslog_sink_close();
	log_to_syslog = false;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = STDERR_FILENO;
}

/* Append to a fixed line buffer, never overflowing; returns the new length. */
static size_t put(char *buf, size_t cap, size_t len, const char *s)
{
	size_t n = strlen(s);
	if (len + n >= cap)
		n = len < cap - 1 ? cap - 1 - len : 0;
	memcpy(buf + len, s, n);
	return len + n;
}

/* Append s as the contents of a JSON string (no quotes). */
static size_t put_json(char *buf, size_t cap, size_t len, const char *s)
{
	for (; *s && len + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			buf[len++] = '\\';
			buf[len++] = (char)ch;
		} else if (ch < 0x20) {
			len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", ch);
		} else {
			buf[len++] = (char)ch;
		}
	}
	return len;
}

static size_t put_jkv(char *buf, size_t cap, size_t len, const char *k, const char *v)
{
	len = put(buf, cap, len, ",\"");
	len = put_json(buf, cap, len, k);
	len = put(buf, cap, len, "\":\"");
	len = put_json(buf, cap, len, v ? v : "");
	return put(buf, cap, len, "\"");
}

void log_write(enum log_level level, const struct log_conn *who,
	       const struct log_kv *kv, size_t nkv, const char *fmt, ...)
{
	char msg[2048], line[4096], ts[64], tmp[64];
	struct timeval tv;
	struct tm tm;
	size_t len = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03d UTC", (int)(tv.tv_usec / 1000));

	if (log_json) {
		len = put(line, sizeof(line), len, "{\"ts\":\"");
		len = put(line, sizeof(line), len, ts);
		snprintf(tmp, sizeof(tmp), "\",\"pid\":%d,\"level\":\"%s\"", (int)getpid(), level_json[level]);
		len = put(line, sizeof(line), len, tmp);
		if (who) {
			snprintf(tmp, sizeof(tmp), "%c-%llu", who->kind, (unsigned long long)who->id);
			len = put_jkv(line, sizeof(line), len, "conn", tmp);
			len = put_jkv(line, sizeof(line), len, "db", who->db);
			len = put_jkv(line, sizeof(line), len, "user", who->user);
			len = put_jkv(line, sizeof(line), len, "addr", who->addr);
		}
		for (size_t i = 0; i < nkv; i++)
			len = put_jkv(line, sizeof(line), len, kv[i].key, kv[i].value);
		len = put_jkv(line, sizeof(line), len, "msg", msg);
		len = put(line, sizeof(line) - 1, len, "}");
	} else {
		snprintf(tmp, sizeof(tmp), " [%d] %s ", (int)getpid(), level_names[level]);
		len = put(line, sizeof(line), len, ts);
		len = put(line, sizeof(line), len, tmp);
		if (who) {
			snprintf(tmp, sizeof(tmp), "%c-%llu ", who->kind, (unsigned long long)who->id);
			len = put(line, sizeof(line), len, tmp);
			len = put(line, sizeof(line), len, who->db ? who->db : "");
			len = put(line, sizeof(line), len, "/");
			len = put(line, sizeof(line), len, who->user ? who->user : "");
			len = put(line, sizeof(line), len, "@");
			len = put(line, sizeof(line), len, who->addr ? who->addr : "");
			len = put(line, sizeof(line), len, " ");
		}
		len = put(line, sizeof(line) - 1, len, msg);
		for (size_t i = 0; i < nkv; i++) {
			len = put(line, sizeof(line) - 1, len, " ");
			len = put(line, sizeof(line) - 1, len, kv[i].key);
			len = put(line, sizeof(line) - 1, len, "=");
			len = put(line, sizeof(line) - 1, len, kv[i].value ? kv[i].value : "");
		}
	}
	line[len] = 0;
	if (log_to_syslog)
		syslog_sink_write((int)level, log_json ? line : line + strlen(ts) + 1);
	line[len++] = '\n';
	while (write(log_fd, line, len) < 0 && errno == EINTR)
		;
}
