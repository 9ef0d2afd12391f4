//! The ME region: `$FPT`, `$MN2`/`$MAN` manifests, `$CPD`, IFWI layout and BPDT; family, version, generation, state.
