//! The uapi helper table (`__BPF_FUNC_MAPPER` in include/uapi/linux/bpf.h): helper ids are stable
//! across kernels, so one table serves every profile.
