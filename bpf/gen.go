// Package bpf holds interlock's eBPF programs (interlock.c) and the Go
// bindings bpf2go generated from them. The generated .go and .o files are
// committed so that building interlock needs no clang; `make generate`
// rebuilds them. InterlockNoCore is the same programs built without the
// CO-RE reads of the connecting task, for kernels without BTF.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type addr_key -type target_val -type redirect_config -type origin -type tuple_key -type stat Interlock interlock.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -DINTERLOCK_NO_CORE" -target bpfel -go-package bpf InterlockNoCore interlock.c
