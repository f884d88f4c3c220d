# Sourced by the scripts: sets CACHE to lockstep's cache directory, by the rule of
# harness/lockstep-vm/src/cache_root.rs: $LOCKSTEP_CACHE, else $XDG_CACHE_HOME/lockstep, else
# $HOME/.cache/lockstep (XDG_CACHE_HOME and HOME only when absolute); never a shared temporary
# path. Without any of them: a message asking for LOCKSTEP_CACHE and exit 2.
if [[ -n ${LOCKSTEP_CACHE:-} ]]; then
  CACHE=$LOCKSTEP_CACHE
elif [[ ${XDG_CACHE_HOME:-} == /* ]]; then
  CACHE=$XDG_CACHE_HOME/lockstep
elif [[ ${HOME:-} == /* ]]; then
  CACHE=$HOME/.cache/lockstep
else
  echo "${0##*/}: no cache directory: set LOCKSTEP_CACHE to a private directory (neither XDG_CACHE_HOME nor HOME is set to an absolute path)" >&2
  exit 2
fi
