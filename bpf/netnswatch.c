//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Serving a container's network namespace before its first connect: a
// task of an intercepted cgroup that executes a program in a network
// namespace interlock does not serve yet is reported on interlock.c's
// netns_events ring, as the connect hook would report it, so that the
// daemon usually has the namespace's listener open before the program's
// first connect. The connect hook still refuses a namespace not served by
// then: this only narrows that window.
//
// A tracing program (tp_btf), so it needs the kernel's BTF; the maps are
// interlock.c's (userspace hands them over at load), so their definitions
// here must match that file's.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define MAX_CGROUP_DEPTH 32
#define CG_INTERCEPTED 1

struct net {
	__u64 net_cookie;
} __attribute__((preserve_access_index));

struct nsproxy {
	struct net *net_ns;
} __attribute__((preserve_access_index));

struct task_struct {
	struct nsproxy *nsproxy;
} __attribute__((preserve_access_index));

struct linux_binprm;

// As in interlock.c.
struct redirect_config {
	__u32 listen_ip4;
	__u32 listen_ip6[4];
	__u16 listen_port4;
	__u16 listen_port6;
	__u32 flags;
	__u32 listener_mark;
	__u32 pad;
	__u64 self_cgroup;
	__u64 netns_cookie;
};

struct ns_listener {
	__u32 listen_ip4;
	__u32 listen_ip6[4];
	__u16 listen_port4;
	__u16 listen_port6;
	__u32 mark;
	__u32 flags;
	__u32 peer_nsid;
};

struct netns_event {
	__u64 netns_cookie;
	__u64 cgroup_id;
	__u32 tgid;
	__u32 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct redirect_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ns_listener);
} netns_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} netns_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} netns_asked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} cgroup_class SEC(".maps");

// intercepted says whether the nearest classified cgroup of the current
// task, from its own up, is one interlock's programs are attached to.
static __always_inline int intercepted(void)
{
	__u64 own = bpf_get_current_cgroup_id();
	__u32 found = 0;

	for (int level = 0; level < MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		__u32 *c;

		if (!id)
			break;
		c = bpf_map_lookup_elem(&cgroup_class, &id);
		if (c)
			found = *c;
		if (id == own)
			break;
	}
	return found == CG_INTERCEPTED;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(netns_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	const struct redirect_config *cfg;
	struct netns_event *e;
	__u64 netns, now, *last;
	__u64 pid_tgid;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->netns_cookie)
		return 0;
	netns = BPF_CORE_READ(p, nsproxy, net_ns, net_cookie);
	// Most programs run in the host's namespace, or in one served.
	if (!netns || netns == cfg->netns_cookie || bpf_map_lookup_elem(&netns_listeners, &netns))
		return 0;
	if (!intercepted())
		return 0;
	now = bpf_ktime_get_boot_ns();
	last = bpf_map_lookup_elem(&netns_asked, &netns);
	if (last && now - *last < 100000000ULL)
		return 0;
	bpf_map_update_elem(&netns_asked, &netns, &now, BPF_ANY);
	e = bpf_ringbuf_reserve(&netns_events, sizeof(*e), 0);
	if (!e)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	e->netns_cookie = netns;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->tgid = pid_tgid >> 32;
	e->pid = (__u32)pid_tgid;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
