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
#include <bpf/bpf_core_read.h>

// The few kernel structures the hooks read to record which program made
// a connect, as the kernel holds it rather than as /proc later shows it.
// preserve_access_index makes every access a CO-RE relocation against the
// running kernel's BTF, so field offsets are the kernel's, not these.
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct user_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct mnt_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct nsproxy {
	struct mnt_namespace *mnt_ns;
} __attribute__((preserve_access_index));

struct cred {
	struct user_namespace *user_ns;
} __attribute__((preserve_access_index));

struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
	__s64 i_ctime_sec;
	__u32 i_ctime_nsec;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	struct mm_struct *mm;
	struct task_struct *group_leader;
	__u64 start_boottime;
	const struct cred *cred;
	struct nsproxy *nsproxy;
} __attribute__((preserve_access_index));

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MAX_CGROUP_DEPTH 32
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
	STAT_REFUSED_NOT_TCP,
	STAT_REFUSED_FOREIGN_SOCKET,
	STAT_REFUSED_UNPLACED_CGROUP,
	STAT_STALE_RECORD,
	STAT_NETNS_ASKED,
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
	// The host listener's netns; 0 (a kernel that cannot tell) sends
	// every namespace's connects to the host listener's address.
	__u64 netns_cookie;
};

// Where interlock listens in one network namespace: the host's from
// config, a container's from netns_listeners.
struct ns_listener {
	__u32 listen_ip4;    // network byte order
	__u32 listen_ip6[4]; // network byte order
	__u16 listen_port4;  // host byte order
	__u16 listen_port6;  // host byte order
	// The listener's SO_MARK, one per namespace: root in a container's
	// user namespace may read the marks of sockets in its network
	// namespace (sock_diag), and must learn nothing that passes for
	// interlock elsewhere.
	__u32 mark;
	// NSL_PEER_NETNS: the listener is not in this namespace but in
	// interlock's own (gateway mode), whose id in this namespace is
	// peer_nsid. A namespace's ids of its peers cannot be changed or
	// removed once set, so the container cannot point it elsewhere.
	__u32 flags;
	__u32 peer_nsid;
};

#define NSL_PEER_NETNS 1

// A connect to a target from a network namespace interlock does not serve
// yet: the connect is refused, and the daemon opens a listener there.
struct netns_event {
	__u64 netns_cookie;
	__u64 cgroup_id;
	__u32 tgid;
	__u32 pid;
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
	// The program, as the kernel holds it at connect: the mm's exe
	// file (device as the kernel encodes dev_t, inode, and its ctime as
	// a change marker), and the task's user and mount namespaces.
	__u64 exe_ino;
	__s64 exe_ctime_sec;
	__u32 exe_ctime_nsec;
	__u32 exe_dev;
	__u32 userns;
	__u32 mntns;
	// The thread group leader's start (CLOCK_BOOTTIME, ns): the
	// process, not just the pid.
	__u64 start_boot_ns;
	__u32 id_flags;
	// Where the hook sent the connect (interlock's listener): the
	// record belongs to a connection to exactly there.
	__u16 redir_port; // host byte order
	__u16 pad;
	__u8 redir_addr[16];
};

// origin.id_flags
#define ID_EXE 1   // exe_dev and exe_ino were read
#define ID_NS 2    // userns and mntns were read
#define ID_CTIME 4 // exe_ctime_* were read
#define ID_START 8 // start_boot_ns was read

// cgroup_class values: how the guard at the cgroup root treats a task in
// that cgroup and (unless one of them has its own entry) its descendants.
#define CG_INTERCEPTED 1 // interlock's programs are attached here
#define CG_FREE 2        // placed: not intercepted
#define CG_WATCHED 3     // a configured cgroup may appear below: any
			 // descendant not placed yet is refused

// A 4-tuple is unique only within a network namespace: two containers
// may both connect from 10.0.0.2:40000 to their own 127.0.0.1 listener.
struct tuple_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; // host byte order
	__u16 dport; // host byte order
	__u32 pad;
	__u64 netns_cookie;
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

// netns cookie -> the listener interlock opened inside that namespace.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ns_listener);
} netns_listeners SEC(".maps");

// Unserved namespaces that connected to a target, for the daemon.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} netns_events SEC(".maps");

// When each unserved namespace was last reported (CLOCK_BOOTTIME, ns), so
// that one namespace's connect loop cannot crowd others out of the ring.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} netns_asked SEC(".maps");

// cgroup id -> CG_*; written by userspace, read by the guard.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} cgroup_class SEC(".maps");

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
const struct ns_listener *unused_ns_listener __attribute__((unused));
const struct netns_event *unused_netns_event __attribute__((unused));

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
// network namespace (in gateway mode, interlock's: see NSL_PEER_NETNS),
// carrying interlock's mark. When interlock is gone the
// connect is refused here instead of being sent to whoever took the port.
static __always_inline int listener_present(struct bpf_sock_addr *ctx,
					    const struct ns_listener *cfg,
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
	if (cfg->flags & NSL_PEER_NETNS) {
		// Gateway mode: the connect leaves this namespace only if no
		// socket here takes the address first (the container's root
		// could put the gateway's address on its own interface).
		sk = bpf_sk_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			bpf_sk_release(sk);
			return 0;
		}
		sk = bpf_sk_lookup_tcp(ctx, &tuple, size, cfg->peer_nsid, 0);
	} else {
		sk = bpf_sk_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return 0;
	ok = sk->state == TCP_LISTEN && sk->mark == cfg->mark;
	bpf_sk_release(sk);
	return ok;
}

// record saves the connect facts under the socket cookie. It returns 0
// when it could not, and then the connect is refused: a redirected
// connection without a record would be closed by the proxy anyway.
// read_program fills in the program facts from the current task. Every
// read is a probe read: a fact that cannot be read stays zero and its
// flag unset, which userspace treats as unknown.
#ifdef INTERLOCK_NO_CORE
// Built for kernels without BTF: nothing to relocate the reads against,
// so no program facts are recorded (userspace treats them as unknown).
static __always_inline void read_program(struct origin *o)
{
}
#else
static __always_inline void read_program(struct origin *o)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader;
	struct user_namespace *uns;
	struct mnt_namespace *mns;
	struct inode *ino;
	struct file *exe;

	if (!task)
		return;
	leader = BPF_CORE_READ(task, group_leader);
	if (leader) {
		o->start_boot_ns = BPF_CORE_READ(leader, start_boottime);
		o->id_flags |= ID_START;
	}
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (exe) {
		ino = BPF_CORE_READ(exe, f_inode);
		if (ino) {
			o->exe_ino = BPF_CORE_READ(ino, i_ino);
			o->exe_dev = BPF_CORE_READ(ino, i_sb, s_dev);
			o->id_flags |= ID_EXE;
			if (bpf_core_field_exists(ino->i_ctime_sec)) {
				o->exe_ctime_sec = BPF_CORE_READ(ino, i_ctime_sec);
				// The top bit flags "ctime was queried" (multigrain
				// timestamps), not part of the time.
				o->exe_ctime_nsec = BPF_CORE_READ(ino, i_ctime_nsec) & 0x3fffffff;
				o->id_flags |= ID_CTIME;
			}
		}
	}
	uns = BPF_CORE_READ(task, cred, user_ns);
	mns = BPF_CORE_READ(task, nsproxy, mnt_ns);
	if (uns && mns) {
		o->userns = BPF_CORE_READ(uns, ns.inum);
		o->mntns = BPF_CORE_READ(mns, ns.inum);
		if (o->userns && o->mntns)
			o->id_flags |= ID_NS;
	}
}
#endif

static __always_inline int record(void *ctx, const struct addr_key *dst,
				  __u16 family, __u32 target_id,
				  const struct ns_listener *cfg, int v6)
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
	read_program(&o);
	if (v6) {
		__builtin_memcpy(o.redir_addr, cfg->listen_ip6, 16);
		o.redir_port = cfg->listen_port6;
	} else {
		set_mapped(o.redir_addr, cfg->listen_ip4);
		o.redir_port = cfg->listen_port4;
	}

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

// ask reports an unserved namespace to the daemon, at most every 100 ms
// per namespace.
static __always_inline void ask(__u64 netns)
{
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 *last = bpf_map_lookup_elem(&netns_asked, &netns);
	struct netns_event *e;
	__u64 pid_tgid;

	if (last && now - *last < 100000000ULL)
		return;
	bpf_map_update_elem(&netns_asked, &netns, &now, BPF_ANY);
	e = bpf_ringbuf_reserve(&netns_events, sizeof(*e), 0);
	if (!e)
		return;
	pid_tgid = bpf_get_current_pid_tgid();
	e->netns_cookie = netns;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->tgid = pid_tgid >> 32;
	e->pid = (__u32)pid_tgid;
	bpf_ringbuf_submit(e, 0);
	count(STAT_NETNS_ASKED);
}

// find_listener fills l with interlock's listener in the connecting
// socket's network namespace: the host's, or the one interlock opened in
// a container's namespace. It returns 0 when interlock serves no listener
// there (and asks the daemon to open one).
static __always_inline int find_listener(struct bpf_sock_addr *ctx,
					 const struct redirect_config *cfg,
					 struct ns_listener *l)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct ns_listener *v;

	if (!cfg->netns_cookie || netns == cfg->netns_cookie) {
		l->listen_ip4 = cfg->listen_ip4;
		__builtin_memcpy(l->listen_ip6, cfg->listen_ip6, 16);
		l->listen_port4 = cfg->listen_port4;
		l->listen_port6 = cfg->listen_port6;
		l->mark = cfg->listener_mark;
		return 1;
	}
	v = bpf_map_lookup_elem(&netns_listeners, &netns);
	if (!v) {
		ask(netns);
		return 0;
	}
	__builtin_memcpy(l, v, sizeof(*l));
	return 1;
}

// lookup_target finds the target a destination belongs to. A service
// listening on a wildcard address answers on every loopback address, not
// only the one in the config: userspace then adds the entry
// ::ffff:127.0.0.0 with the port, and any 127.0.0.0/8 destination on that
// port is that target.
static __always_inline struct target_val *lookup_target(const struct addr_key *key)
{
	struct target_val *t = bpf_map_lookup_elem(&targets, key);
	struct addr_key lo;

	if (t)
		return t;
	if (key->addr[10] != 0xff || key->addr[11] != 0xff || key->addr[12] != 127)
		return 0;
	__builtin_memcpy(&lo, key, sizeof(lo));
	lo.addr[13] = 0;
	lo.addr[14] = 0;
	lo.addr[15] = 0;
	return bpf_map_lookup_elem(&targets, &lo);
}

// key4 is the targets-map key of an IPv4 destination.
static __always_inline void key4(struct bpf_sock_addr *ctx, struct addr_key *key)
{
	__u32 ip4 = ctx->user_ip4;

	// The kernel routes a connect to 0.0.0.0 to 127.0.0.1.
	if (ip4 == 0)
		ip4 = bpf_htonl(0x7f000001);
	set_mapped(key->addr, ip4);
	key->port = bpf_ntohs((__u16)ctx->user_port);
}

// key6 is the targets-map key of an IPv6 destination; it says whether the
// destination is v4-mapped.
static __always_inline int key6(struct bpf_sock_addr *ctx, struct addr_key *key)
{
	__u32 ip6[4];
	int mapped;

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
		set_mapped(key->addr, ip4);
	} else if ((ip6[0] | ip6[1] | ip6[2] | ip6[3]) == 0) {
		// The kernel routes a connect to :: to ::1.
		ip6[3] = bpf_htonl(1);
		set_ip6(key->addr, ip6);
	} else {
		set_ip6(key->addr, ip6);
	}
	key->port = bpf_ntohs((__u16)ctx->user_port);
	return mapped;
}

// forget drops the socket's earlier connect record, if any: a record is
// valid only for the connect that made it, and a socket whose redirected
// connect failed may connect again, elsewhere.
static __always_inline void forget(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	bpf_map_delete_elem(&pending, &cookie);
}

// not_tcp handles a non-TCP connect or datagram: the proxy speaks TCP, so
// a UDP (or other) packet to a target's address and port is refused, not
// sent on uninspected.
static __always_inline int not_tcp(const struct addr_key *key)
{
	if (!lookup_target(key))
		return 1;
	count(STAT_REFUSED_NOT_TCP);
	return 0;
}

SEC("cgroup/connect4")
int interlock_connect4(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};
	const struct redirect_config *cfg;
	struct ns_listener l = {};
	struct target_val *t;

	cfg = load_config();
	if (!cfg)
		return 1;
	if (cfg->self_cgroup && bpf_get_current_cgroup_id() == cfg->self_cgroup)
		return 1;
	key4(ctx, &key);
	if (ctx->protocol != IPPROTO_TCP)
		return not_tcp(&key);
	forget(ctx);
	t = lookup_target(&key);
	if (!t)
		return 1;

	if (!find_listener(ctx, cfg, &l))
		return refuse(cfg, STAT_REFUSED_NETNS);
	if (!listener_present(ctx, &l, 0))
		return refuse(cfg, STAT_REFUSED_NO_LISTENER);
	if (!record(ctx, &key, AF_INET, t->target_id, &l, 0))
		return 0;
	remember_peer(ctx, &key, AF_INET);

	ctx->user_ip4 = l.listen_ip4;
	ctx->user_port = bpf_htons(l.listen_port4);
	count(STAT_REDIRECTED);
	return 1;
}

SEC("cgroup/connect6")
int interlock_connect6(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};
	const struct redirect_config *cfg;
	struct ns_listener l = {};
	struct target_val *t;
	int mapped;

	cfg = load_config();
	if (!cfg)
		return 1;
	if (cfg->self_cgroup && bpf_get_current_cgroup_id() == cfg->self_cgroup)
		return 1;
	mapped = key6(ctx, &key);
	if (ctx->protocol != IPPROTO_TCP)
		return not_tcp(&key);
	forget(ctx);
	t = lookup_target(&key);
	if (!t)
		return 1;

	if (!find_listener(ctx, cfg, &l))
		return refuse(cfg, STAT_REFUSED_NETNS);
	if (mapped) {
		if (!listener_present(ctx, &l, 0))
			return refuse(cfg, STAT_REFUSED_NO_LISTENER);
		if (!record(ctx, &key, AF_INET, t->target_id, &l, 0))
			return 0;
		remember_peer(ctx, &key, AF_INET);
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = l.listen_ip4;
		ctx->user_port = bpf_htons(l.listen_port4);
	} else {
		if (!listener_present(ctx, &l, 1))
			return refuse(cfg, STAT_REFUSED_NO_LISTENER);
		if (!record(ctx, &key, AF_INET6, t->target_id, &l, 1))
			return 0;
		remember_peer(ctx, &key, AF_INET6);
		ctx->user_ip6[0] = l.listen_ip6[0];
		ctx->user_ip6[1] = l.listen_ip6[1];
		ctx->user_ip6[2] = l.listen_ip6[2];
		ctx->user_ip6[3] = l.listen_ip6[3];
		ctx->user_port = bpf_htons(l.listen_port6);
	}
	count(STAT_REDIRECTED);
	return 1;
}

// Datagrams (sendto without connect) to a target are refused.
SEC("cgroup/sendmsg4")
int interlock_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};

	key4(ctx, &key);
	return not_tcp(&key);
}

SEC("cgroup/sendmsg6")
int interlock_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};

	key6(ctx, &key);
	return not_tcp(&key);
}

// placement finds how the guard treats the current task: the class of
// the nearest cgroup, from the task's own up to the root, that has one
// (0 when none has). *self says whether that cgroup is the task's own.
static __always_inline __u32 placement(int *self)
{
	__u64 own = bpf_get_current_cgroup_id();
	__u32 found = 0;
	__u64 found_id = 0;

	for (int level = 0; level < MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		__u32 *c;

		if (!id)
			break;
		c = bpf_map_lookup_elem(&cgroup_class, &id);
		if (c) {
			found = *c;
			found_id = id;
		}
		if (id == own)
			break;
	}
	*self = found_id == own;
	return found;
}

// guard runs, attached at the cgroup root, for sockets of every cgroup,
// after the programs of intercepted cgroups (which have already sent
// their own sockets' connects to the listener). A connect to a target
// that still names the target here comes from a task in an intercepted
// cgroup using a socket made outside it (passed or stolen), or from a
// cgroup that appeared where a configured one may appear and that
// userspace has not placed yet: both are refused.
static __always_inline int guard(const struct addr_key *key, int datagram)
{
	const struct redirect_config *cfg;
	__u32 class;
	int self = 0;

	if (!lookup_target(key))
		return 1;
	cfg = load_config();
	if (!cfg)
		return 1;
	if (cfg->self_cgroup && bpf_get_current_cgroup_id() == cfg->self_cgroup)
		return 1;
	class = placement(&self);
	switch (class) {
	case CG_INTERCEPTED:
		// With fail-open, the cgroup's own program lets a connect
		// through when the listener is gone.
		if (!datagram && (cfg->flags & CFG_FAIL_OPEN))
			return 1;
		count(STAT_REFUSED_FOREIGN_SOCKET);
		return 0;
	case CG_WATCHED:
		if (self)
			return 1;
		count(STAT_REFUSED_UNPLACED_CGROUP);
		return 0;
	}
	return 1;
}

SEC("cgroup/connect4")
int interlock_guard_connect4(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};

	key4(ctx, &key);
	return guard(&key, ctx->protocol != IPPROTO_TCP);
}

SEC("cgroup/connect6")
int interlock_guard_connect6(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};

	key6(ctx, &key);
	return guard(&key, ctx->protocol != IPPROTO_TCP);
}

SEC("cgroup/sendmsg4")
int interlock_guard_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};

	key4(ctx, &key);
	return guard(&key, 1);
}

SEC("cgroup/sendmsg6")
int interlock_guard_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct addr_key key = {};

	key6(ctx, &key);
	return guard(&key, 1);
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

static __always_inline int same_addr(const __u8 *a, const __u8 *b)
{
	__u32 x[4], y[4];

	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

SEC("sockops")
int interlock_sockops(struct bpf_sock_ops *skops)
{
	const struct redirect_config *cfg;
	struct tuple_key key = {};
	struct ns_listener *nl;
	struct origin *o;
	__u64 cookie, netns;
	__u16 dport, port4, port6;

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	cfg = load_config();
	if (!cfg)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	o = bpf_map_lookup_elem(&pending, &cookie);
	netns = bpf_get_netns_cookie(skops);
	port4 = cfg->listen_port4;
	port6 = cfg->listen_port6;
	if (cfg->netns_cookie && netns != cfg->netns_cookie) {
		nl = bpf_map_lookup_elem(&netns_listeners, &netns);
		port4 = nl ? nl->listen_port4 : 0;
		port6 = nl ? nl->listen_port6 : 0;
	}
	// remote_port holds the network-order port in its upper 16 bits.
	dport = (__u16)bpf_ntohl(skops->remote_port);
	if (!o && (!dport || (dport != port4 && dport != port6)))
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
	key.dport = dport;
	key.netns_cookie = netns;

	if (!o) {
		// A connect to the listener that the hook did not send there:
		// a record an earlier connection left under the same 4-tuple
		// is not this one's.
		if (bpf_map_delete_elem(&origins, &key) == 0)
			count(STAT_STALE_RECORD);
		return 1;
	}
	if (dport != o->redir_port || !same_addr(key.daddr, o->redir_addr) ||
	    (o->netns_cookie && o->netns_cookie != netns)) {
		// Not where the hook sent it: the record is not this
		// connection's.
		bpf_map_delete_elem(&pending, &cookie);
		bpf_map_delete_elem(&origins, &key);
		count(STAT_STALE_RECORD);
		return 1;
	}
	if (bpf_map_update_elem(&origins, &key, o, BPF_ANY)) {
		count(STAT_ORIGINS_FULL);
		return 1;
	}
	bpf_map_delete_elem(&pending, &cookie);
	count(STAT_REKEYED);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
