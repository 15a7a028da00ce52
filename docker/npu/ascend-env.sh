# Sourced (not executed): finds and sources CANN's set_env.sh.
# Order: the install path recorded by the CANN installer, then the CANN 8 default
# (ascend-toolkit/), then the CANN 8.5+/9 layout (cann/). Quiet if none exists (e.g. a CPU test).
_ascend_root=/usr/local/Ascend
if [ -f /etc/Ascend/ascend_cann_install.info ]; then
  _p="$(sed -n 's/^Install_Path=//p' /etc/Ascend/ascend_cann_install.info | head -n1)"
  [ -n "$_p" ] && _ascend_root="$_p"
fi
for _f in "$_ascend_root/ascend-toolkit/set_env.sh" "$_ascend_root/cann/set_env.sh" \
          /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/cann/set_env.sh; do
  if [ -f "$_f" ]; then
    # shellcheck disable=SC1090
    source "$_f"
    break
  fi
done
unset _ascend_root _p _f
