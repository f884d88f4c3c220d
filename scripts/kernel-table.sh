# Sourced by the scripts: the Debian kernel table (harness/lockstep-vm/debian-kernels.tsv), the
# same file lockstep compiles in.
#
#   kernel_row debian:7.3   sets SERIES, SUITE, BASE_SUITE ("" for none) and SCHEME; returns 1 if
#                           the name is not in the table
#   kernel_names            prints the known names, comma-separated
KERNEL_TABLE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/harness/lockstep-vm/debian-kernels.tsv

kernel_row() {
  local row
  row=$(awk -F'\t' -v n="$1" '!/^#/ && $1 == n { print $2 "\t" $3 "\t" $4 "\t" $5 }' "$KERNEL_TABLE")
  [[ -n $row ]] || return 1
  IFS=$'\t' read -r SERIES SUITE BASE_SUITE SCHEME <<<"$row"
  [[ $BASE_SUITE != - ]] || BASE_SUITE=
}

kernel_names() {
  awk -F'\t' '!/^#/ && NF { printf "%s%s", sep, $1; sep = ", " } END { print "" }' "$KERNEL_TABLE"
}
