//! PID-1 duties of the agent as `/init`: mounts, kernel modules, console and
//! kmsg logging, network, configuration, and the handoff to the OS.
