//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Interlock's kernel side: cgroup connect hooks that redirect a chosen
// process's TCP connects to interlock's local listener and record who made
// them, and a sockops program that re-keys that record by the connection's
// 4-tuple so the proxy can find it after accept().
//
// Every address is kept in IPv6 form (IPv4 as ::ffff:a.b.c.d) so connect4
// and connect6 share one targets map and a v4-mapped connect6 finds the same
// entry as a plain connect4.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_LISTEN 10
#define TASK_COMM_LEN 16

// Userspace writes config.flags.
#define CFG_FAIL_OPEN 1

// Indexes into the stats array; userspace mirrors these names.
enum stat {
	STAT_REDIRECTED = 0,
	STAT_REFUSED_NO_LISTENER,
	STAT_PASSED_FAIL_OPEN,
	STAT_REFUSED_NETNS,
	STAT_REKEYED,
	STAT_PENDING_FULL,
	STAT_ORIGINS_FULL,
	STAT_MAX,
};

struct addr_key {
	__u8 addr[16];
	__u16 port; // host byte order
	__u16 pad;
};

struct target_val {
	__u32 target_id;
	__u32 flags;
};

struct redirect_config {
	__u32 listen_ip4;    // network byte order
	__u32 listen_ip6[4]; // network byte order
	__u16 listen_port4;  // host byte order
	__u16 listen_port6;  // host byte order
	__u32 flags;
	// SO_MARK of interlock's listeners. Setting a mark needs
	// CAP_NET_ADMIN, so a process that binds the listener's port after
	// interlock died cannot pass for it.
	__u32 listener_mark;
	__u32 pad;
	__u64 self_cgroup;  // interlock's own cgroup: never redirected
	__u64 netns_cookie; // the listener's netns; 0 disables the check
};

struct origin {
	__u8 orig_addr[16];
	__u16 orig_port; // host byte order
	__u16 orig_family;
	__u32 target_id;
	__u32 pid;
	__u32 tgid;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	__u64 netns_cookie;
	__u64 boot_ns;
	__u64 cookie;
	char comm[TASK_COMM_LEN];
};

struct tuple_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; // host byte order
	__u16 dport; // host byte order
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct addr_key);
	__type(value, struct target_val);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct redirect_config);
} config SEC(".maps");

// Connect records by socket cookie, from connect until sockops re-keys them.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct origin);
} pending SEC(".maps");

// Connect records by 4-tuple, until the proxy accepts and deletes them.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tuple_key);
	__type(value, struct origin);
} origins SEC(".maps");

// The original destination of each redirected socket, for as long as the
// socket lives, so getpeername() tells the client where it meant to go
// rather than interlock's listener. The kernel frees it with the socket.
struct peer_addr {
	__u8 addr[16]; // IPv6 form; IPv4 as ::ffff:a.b.c.d
	__u16 port;    // host byte order
	__u16 family;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct peer_addr);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Force bpf2go to emit Go types for the structs userspace reads and writes.
const struct addr_key *unused_addr_key __attribute__((unused));
const struct target_val *unused_target_val __attribute__((unused));
const struct redirect_config *unused_config __attribute__((unused));
const struct origin *unused_origin __attribute__((unused));
const struct tuple_key *unused_tuple_key __attribute__((unused));
const enum stat *unused_stat __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline void set_mapped(__u8 *dst, __u32 ip4)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &ip4, 4);
}

static __always_inline void set_ip6(__u8 *dst, const __u32 *ip6)
{
	__builtin_memcpy(dst, ip6, 16);
}

// Connects to a listener that is gone, or from a network namespace whose
// loopback interlock does not listen on, must not reach the target: refuse
// them, unless the operator chose fail-open.
static __always_inline int refuse(const struct redirect_config *cfg, __u32 why)
{
	count(why);
	if (cfg->flags & CFG_FAIL_OPEN) {
		count(STAT_PASSED_FAIL_OPEN);
		return 1;
	}
	return 0;
}

// listener_present checks that interlock itself is listening where the
// connect would be sent: a TCP listener on that address and port, in this
// network namespace, carrying interlock's mark. When interlock is gone the
// connect is refused here instead of being sent to whoever took the port.
static __always_inline int listener_present(struct bpf_sock_addr *ctx,
					    const struct redirect_config *cfg,
					    int v6)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	__u32 size;
	int ok;

	if (v6) {
		if (!cfg->listen_port6)
			return 0;
		tuple.ipv6.daddr[0] = cfg->listen_ip6[0];
		tuple.ipv6.daddr[1] = cfg->listen_ip6[1];
		tuple.ipv6.daddr[2] = cfg->listen_ip6[2];
		tuple.ipv6.daddr[3] = cfg->listen_ip6[3];
		tuple.ipv6.dport = bpf_htons(cfg->listen_port6);
		size = sizeof(tuple.ipv6);
	} else {
		if (!cfg->listen_port4)
			return 0;
		tuple.ipv4.daddr = cfg->listen_ip4;
		tuple.ipv4.dport = bpf_htons(cfg->listen_port4);
		size = sizeof(tuple.ipv4);
	}
	sk = bpf_sk_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	ok = sk->state == TCP_LISTEN && sk->mark == cfg->listener_mark;
	bpf_sk_release(sk);
	return ok;
}

// record saves the connect facts under the socket cookie. It returns 0
// when it could not, and then the connect is refused: a redirected
// connection without a record would be closed by the proxy anyway.
static __always_inline int record(void *ctx, const struct addr_key *dst,
				  __u16 family, __u32 target_id)
{
	struct origin o = {};
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	__builtin_memcpy(o.orig_addr, dst->addr, 16);
	o.orig_port = dst->port;
	o.orig_family = family;
	o.target_id = target_id;
	o.pid = (__u32)pid_tgid;
	o.tgid = pid_tgid >> 32;
	o.uid = (__u32)uid_gid;
	o.gid = uid_gid >> 32;
	o.cgroup_id = bpf_get_current_cgroup_id();
	o.netns_cookie = bpf_get_netns_cookie(ctx);
	o.boot_ns = bpf_ktime_get_boot_ns();
	o.cookie = bpf_get_socket_cookie(ctx);
	bpf_get_current_comm(o.comm, sizeof(o.comm));

	if (bpf_map_update_elem(&pending, &o.cookie, &o, BPF_ANY)) {
		count(STAT_PENDING_FULL);
		return 0;
	}
	return 1;
}

static __always_inline void remember_peer(struct bpf_sock_addr *ctx,
					  const struct addr_key *dst, __u16 family)
{
	struct peer_addr *p;
	struct bpf_sock *sk = ctx->sk;

	if (!sk)
		return;
	p = bpf_sk_storage_get(&peers, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!p)
		return;
	__builtin_memcpy(p->addr, dst->addr, 16);
	p->port = dst->port;
	p->family = family;
}

static __always_inline const struct redirect_config *load_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

SEC("cgroup/connect4")
int interlock_connect4(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};
	const struct redirect_config *cfg;
	struct target_val *t;
	__u32 ip4;

	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	cfg = load_config();
	if (!cfg)
		return 1;
	if (cfg->self_cgroup && bpf_get_current_cgroup_id() == cfg->self_cgroup)
		return 1;

	ip4 = ctx->user_ip4;
	// The kernel routes a connect to 0.0.0.0 to 127.0.0.1.
	if (ip4 == 0)
		ip4 = bpf_htonl(0x7f000001);
	set_mapped(key.addr, ip4);
	key.port = bpf_ntohs((__u16)ctx->user_port);
	t = bpf_map_lookup_elem(&targets, &key);
	if (!t)
		return 1;

	if (cfg->netns_cookie && bpf_get_netns_cookie(ctx) != cfg->netns_cookie)
		return refuse(cfg, STAT_REFUSED_NETNS);
	if (!listener_present(ctx, cfg, 0))
		return refuse(cfg, STAT_REFUSED_NO_LISTENER);
	if (!record(ctx, &key, AF_INET, t->target_id))
		return 0;
	remember_peer(ctx, &key, AF_INET);

	ctx->user_ip4 = cfg->listen_ip4;
	ctx->user_port = bpf_htons(cfg->listen_port4);
	count(STAT_REDIRECTED);
	return 1;
}

SEC("cgroup/connect6")
int interlock_connect6(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};
	const struct redirect_config *cfg;
	struct target_val *t;
	__u32 ip6[4];
	int mapped;

	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	cfg = load_config();
	if (!cfg)
		return 1;
	if (cfg->self_cgroup && bpf_get_current_cgroup_id() == cfg->self_cgroup)
		return 1;

	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	// ::ffff:a.b.c.d reaches an IPv4 peer through the v6 socket API and
	// never passes connect4, so it is looked up as the IPv4 target it is.
	mapped = ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff);
	if (mapped) {
		__u32 ip4 = ip6[3];
		if (ip4 == 0)
			ip4 = bpf_htonl(0x7f000001);
		set_mapped(key.addr, ip4);
	} else if ((ip6[0] | ip6[1] | ip6[2] | ip6[3]) == 0) {
		// The kernel routes a connect to :: to ::1.
		ip6[3] = bpf_htonl(1);
		set_ip6(key.addr, ip6);
	} else {
		set_ip6(key.addr, ip6);
	}
	key.port = bpf_ntohs((__u16)ctx->user_port);
	t = bpf_map_lookup_elem(&targets, &key);
	if (!t)
		return 1;

	if (cfg->netns_cookie && bpf_get_netns_cookie(ctx) != cfg->netns_cookie)
		return refuse(cfg, STAT_REFUSED_NETNS);
	if (mapped) {
		if (!listener_present(ctx, cfg, 0))
			return refuse(cfg, STAT_REFUSED_NO_LISTENER);
		if (!record(ctx, &key, AF_INET, t->target_id))
			return 0;
		remember_peer(ctx, &key, AF_INET);
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = cfg->listen_ip4;
		ctx->user_port = bpf_htons(cfg->listen_port4);
	} else {
		if (!listener_present(ctx, cfg, 1))
			return refuse(cfg, STAT_REFUSED_NO_LISTENER);
		if (!record(ctx, &key, AF_INET6, t->target_id))
			return 0;
		remember_peer(ctx, &key, AF_INET6);
		ctx->user_ip6[0] = cfg->listen_ip6[0];
		ctx->user_ip6[1] = cfg->listen_ip6[1];
		ctx->user_ip6[2] = cfg->listen_ip6[2];
		ctx->user_ip6[3] = cfg->listen_ip6[3];
		ctx->user_port = bpf_htons(cfg->listen_port6);
	}
	count(STAT_REDIRECTED);
	return 1;
}

// getpeername() on a redirected socket reports the original destination.
SEC("cgroup/getpeername4")
int interlock_getpeername4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct peer_addr *p;
	__u32 ip4;

	if (!sk)
		return 1;
	p = bpf_sk_storage_get(&peers, sk, 0, 0);
	if (!p || p->family != AF_INET)
		return 1;
	__builtin_memcpy(&ip4, p->addr + 12, 4);
	ctx->user_ip4 = ip4;
	ctx->user_port = bpf_htons(p->port);
	return 1;
}

SEC("cgroup/getpeername6")
int interlock_getpeername6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct peer_addr *p;
	__u32 a[4];

	if (!sk)
		return 1;
	p = bpf_sk_storage_get(&peers, sk, 0, 0);
	if (!p)
		return 1;
	// An IPv4 destination reached from a v6 socket is reported v4-mapped,
	// as the client wrote it.
	__builtin_memcpy(a, p->addr, 16);
	ctx->user_ip6[0] = a[0];
	ctx->user_ip6[1] = a[1];
	ctx->user_ip6[2] = a[2];
	ctx->user_ip6[3] = a[3];
	ctx->user_port = bpf_htons(p->port);
	return 1;
}

SEC("sockops")
int interlock_sockops(struct bpf_sock_ops *skops)
{
	struct tuple_key key = {};
	struct origin *o;
	__u64 cookie;

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	o = bpf_map_lookup_elem(&pending, &cookie);
	if (!o)
		return 1;

	// sock_ops context fields allow only 4-byte reads; volatile keeps the
	// compiler from merging neighbouring words into 8-byte loads.
	__u32 r6[4], l6[4];
	r6[0] = *(volatile __u32 *)&skops->remote_ip6[0];
	r6[1] = *(volatile __u32 *)&skops->remote_ip6[1];
	r6[2] = *(volatile __u32 *)&skops->remote_ip6[2];
	r6[3] = *(volatile __u32 *)&skops->remote_ip6[3];

	// A v6 socket connected to a v4-mapped address runs the IPv4 code
	// path; at this point only its IPv4 addresses are filled in.
	if (skops->family == AF_INET ||
	    (r6[0] == 0 && r6[1] == 0 && r6[2] == bpf_htonl(0xffff))) {
		set_mapped(key.saddr, skops->local_ip4);
		set_mapped(key.daddr, skops->remote_ip4);
	} else {
		l6[0] = *(volatile __u32 *)&skops->local_ip6[0];
		l6[1] = *(volatile __u32 *)&skops->local_ip6[1];
		l6[2] = *(volatile __u32 *)&skops->local_ip6[2];
		l6[3] = *(volatile __u32 *)&skops->local_ip6[3];
		set_ip6(key.saddr, l6);
		set_ip6(key.daddr, r6);
	}
	key.sport = (__u16)skops->local_port;
	// remote_port holds the network-order port in its upper 16 bits.
	key.dport = (__u16)bpf_ntohl(skops->remote_port);

	if (bpf_map_update_elem(&origins, &key, o, BPF_ANY)) {
		count(STAT_ORIGINS_FULL);
		return 1;
	}
	bpf_map_delete_elem(&pending, &cookie);
	count(STAT_REKEYED);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
