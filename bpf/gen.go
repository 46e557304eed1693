// Package bpf holds interlock's eBPF programs (interlock.c) and the Go
// bindings bpf2go generated from them. The generated .go and .o files are
// committed so that building interlock needs no clang; `make generate`
// rebuilds them. InterlockNoCore is the same programs built without the
// CO-RE reads of the connecting task, for kernels without BTF. Lineage
// (lineage.c) is the agent lineage's tracing programs, a separate object
// so the connect hooks load without them where they cannot (no BTF).
// NetnsWatch (netnswatch.c) reports a container's network namespace at
// its first exec in an intercepted cgroup, on Interlock's maps.
//
// The C headers' <asm/...> live in the host's multiarch directory
// (/usr/include/x86_64-linux-gnu, /usr/include/aarch64-linux-gnu, ...):
// the include path follows `uname -m`, as the Makefile's ARCH_INC does.
// The objects are bpfel whatever the host, so every little-endian host
// generates the same bytes.
package bpf

//go:generate sh -c "go tool bpf2go -cc clang -cflags \"-O2 -g -Wall -Werror -I/usr/include/$(uname -m)-linux-gnu\" -target bpfel -go-package bpf -type addr_key -type target_val -type redirect_config -type origin -type tuple_key -type stat -type ns_listener -type netns_event Interlock interlock.c"
//go:generate sh -c "go tool bpf2go -cc clang -cflags \"-O2 -g -Wall -Werror -I/usr/include/$(uname -m)-linux-gnu -DINTERLOCK_NO_CORE\" -target bpfel -go-package bpf InterlockNoCore interlock.c"
//go:generate sh -c "go tool bpf2go -cc clang -cflags \"-O2 -g -Wall -Werror -I/usr/include/$(uname -m)-linux-gnu\" -target bpfel -go-package bpf -type lineage_tag -type exe_key Lineage lineage.c"
//go:generate sh -c "go tool bpf2go -cc clang -cflags \"-O2 -g -Wall -Werror -I/usr/include/$(uname -m)-linux-gnu\" -target bpfel -go-package bpf NetnsWatch netnswatch.c"
