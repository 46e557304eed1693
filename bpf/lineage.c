//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Agent lineage, kept by the kernel: a task that executes a registered
// agent executable is tagged as that agent's root, and every task forked
// from a tagged one inherits the tag at fork. A tool the agent orphaned
// (double fork, setsid -f, a daemonised helper) is reparented to a
// subreaper or pid 1, so the /proc parent chain no longer leads to the
// agent; the tag, copied at fork, still does.
//
// These are tracing programs (tp_btf), so they need the kernel's BTF; they
// live apart from interlock.c so that the connect hooks and their no-CO-RE
// build stay as they are. Userspace reads a tag through a pidfd at accept.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
} __attribute__((preserve_access_index));

struct task_struct {
	int tgid;
	__u64 start_boottime;
	struct task_struct *group_leader;
} __attribute__((preserve_access_index));

// lineage_tag: the nearest agent a task descends from. root_* name the
// task that executed the agent (its thread group and start, so a reused
// pid is told apart) and exe_* the registered executable it ran.
struct lineage_tag {
	__u32 agent_id;
	__u32 root_tgid;
	__u64 root_start_ns; // CLOCK_BOOTTIME, ns
	__u64 exe_ino;
	__u32 exe_dev; // the kernel's dev_t encoding (major << 20 | minor)
	__u32 pad;
};

// An executable, as the kernel names it.
struct exe_key {
	__u64 ino;
	__u32 dev; // the kernel's dev_t encoding
	__u32 pad;
};

// Freed with the task by the kernel.
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lineage_tag);
} lineage SEC(".maps");

// exe_key -> agent id; userspace registers the agents' executables.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct exe_key);
	__type(value, __u32);
} agent_exes SEC(".maps");

const struct lineage_tag *unused_lineage_tag __attribute__((unused));
const struct exe_key *unused_exe_key __attribute__((unused));

SEC("tp_btf/sched_process_exec")
int BPF_PROG(lineage_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	struct exe_key key = {};
	struct lineage_tag *t;
	struct inode *ino;
	__u32 *agent;

	ino = BPF_CORE_READ(bprm, file, f_inode);
	if (!ino)
		return 0;
	key.ino = BPF_CORE_READ(ino, i_ino);
	key.dev = BPF_CORE_READ(ino, i_sb, s_dev);
	agent = bpf_map_lookup_elem(&agent_exes, &key);
	if (!agent)
		return 0;
	// The exec has made p its thread group's leader: it is the root.
	t = bpf_task_storage_get(&lineage, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return 0;
	t->agent_id = *agent;
	t->root_tgid = BPF_CORE_READ(p, tgid);
	t->root_start_ns = BPF_CORE_READ(p, start_boottime);
	t->exe_ino = key.ino;
	t->exe_dev = key.dev;
	return 0;
}

// Threads come through here too (clone), so every thread of a tagged
// process carries its tag. A task userspace tagged after it started
// (an agent already running when interlock started) has the tag on its
// leader only: a thread without one inherits its leader's.
SEC("tp_btf/sched_process_fork")
int BPF_PROG(lineage_fork, struct task_struct *parent, struct task_struct *child)
{
	struct lineage_tag *src, *dst;
	struct task_struct *leader;

	src = bpf_task_storage_get(&lineage, parent, 0, 0);
	if (!src) {
		leader = parent->group_leader;
		if (!leader)
			return 0;
		src = bpf_task_storage_get(&lineage, leader, 0, 0);
		if (!src)
			return 0;
	}
	dst = bpf_task_storage_get(&lineage, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!dst)
		return 0;
	*dst = *src;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
