# leader-run's guard: a dead-man's switch for the child's process group. POSIX sh (dash, busybox ash,
# bash); started by leader-run in its own session, reading commands on stdin, writing acks on stdout.
#
# It holds the deadline of every group it guards. If the deadline passes without an extension (leader-run
# stopped, its event loop stalled, blocked on a stderr nobody drains, a hung request), or leader-run dies
# (EOF on stdin), it stops the group by itself. Each deadline is a timer subshell with its own `sleep`
# processes, started before the timer it replaces is cancelled, so a SIGSTOPped (or even killed) guard
# still fires. Kills come first; reports go to stderr from background subshells, so a stderr nobody
# drains can never hold up a kill.
#
# Times are absolute centiseconds of CLOCK_BOOTTIME as /proc/uptime shows it; leader-run converts its
# monotonic deadlines so that they fire no later than the true ones. Never relative times: a leader-run
# stopped between computing and writing one would stretch it.
#
#   watch <pgid> <signal> <graceCs> <signalAt> <killAt> [seq]
#                                                         guard a group; answers "ack <pgid> [seq]" (seq
#                                                         tells one watch's answer from an earlier one's)
#   extend <signalAt> <killAt>                            new deadline for every group
#   unwatch <pgid>                                        the group is gone; its timers are cancelled
#   ping <token>                                          answers "pong <token>"
#   (EOF)                                                 leader-run died: signal every group now, then
#                                                         SIGKILL after min(grace, its killAt)
# A signalAt of 0 means no deadline yet (only EOF stops the group). <signal> is a name without SIG.
# Only `kill -SIG -pgid` forms are used: dash and busybox ash disagree on `kill -s SIG -- -pgid`.
# argv: $1 leader-run's pid (for reports), $2 report format: text | json | quiet

parent=${1:-?}
format=${2:-text}
groups=''

# Leader-run's own stop signals (Ctrl-C to its terminal group, systemd's SIGTERM to the cgroup) and job
# control must not take the guard down or freeze it; timer subshells inherit these (ignored stays
# ignored). USR1 is caught rather than ignored: a subshell resets it to its default action (terminate)
# until it sets its own trap, so a timer cancelled with USR1 at any moment ends, and kills its pending
# `sleep` first (an orphaned sleep would become a zombie nobody reaps when leader-run is PID 1).
trap '' HUP INT TERM QUIT USR2 PIPE TSTP TTIN TTOU
trap ':' USR1

now_cs() {
  read -r _up _idle </proc/uptime
  _f=${_up#*.}
  now=$(( ${_up%.*} * 100 + ${_f#0} ))
}

# Sleeps until CLOCK_BOOTTIME reaches $1 (centiseconds), in steps of at most $3 centiseconds (default
# 1 s) so a suspend or a late wake-up is noticed. With $2, returns 1 as soon as process group $2 no longer
# exists: a vanished group's id may be reused, and must never be signalled. With $4 (the group was
# signalled and is stopping), a group of zombies counts as gone too, and the steps start at 20 ms and
# double: most commands end within milliseconds of the signal.
sleep_until() {
  _step=${3:-100}
  [ -z "$4" ] || _step=2
  while now_cs; [ "$now" -lt "$1" ]; do
    if [ -n "$2" ] && gone "$2" "$4"; then return 1; fi
    _d=$(( $1 - now ))
    [ "$_d" -gt "$_step" ] && _d=$_step
    sleep "$(( _d / 100 )).$(( _d % 100 / 10 ))$(( _d % 10 ))" &
    _sp=$!
    wait "$_sp"
    _step=$(( _step * 2 ))
    [ "$_step" -le "${3:-100}" ] || _step=${3:-100}
  done
  if [ -n "$2" ] && gone "$2" "$4"; then return 1; fi
  return 0
}

# gone <pgid> [stopping]: group <pgid> no longer exists or, with <stopping>, holds only zombies.
#
# kill -0 succeeds while a zombie is left in the group, and where PID 1 reaps orphans late (or never: a
# container without an init) the killed child of a dead leader-run stays one for hundreds of ms or for
# good; waiting for that kept this guard, which a file-lock standby waits for, up to its SIGKILL time.
# A zombie runs no code and cannot fork, so a group of zombies is as stopped as a vanished one; it can
# gain a member only by a live process of the same session moving into it (setpgid), a process outside
# the group that this guard never covered anyway. Only while stopping: the check costs forks, and the
# steady state must stay one `sleep` a second.
gone() {
  kill -0 "-$1" 2>/dev/null || return 0
  [ -n "$2" ] || return 1
  # The group leader first, with the builtin read (no fork): while it runs, the group is not stopped.
  _st=''
  read -r _st 2>/dev/null </proc/"$1"/stat
  case ${_st##*)} in
    ' Z '* | ' X '*) ;;
    *) [ -z "$_st" ] || return 1 ;;
  esac
  # A scan forks (tens of ms of CPU here): after one that found a live member, the next waits twice
  # as long, up to 1 s, for a member that outlives a dead leader (one that ignores the signal).
  [ "$now" -ge "${_scan_at:-0}" ] || return 1
  if ! only_zombies "$1"; then
    _scan_gap=$(( ${_scan_gap:-5} * 2 ))
    [ "$_scan_gap" -le 100 ] || _scan_gap=100
    _scan_at=$(( now + _scan_gap ))
    return 1
  fi
  # A member forked while the scan ran may be missing from it. SIGKILL to the group reaches every
  # member, however recent (the kernel makes a fork either see it or not happen), and ends all forking;
  # it is what killAt would send anyway. A second scan then sees every member there is.
  kill -KILL "-$1" 2>/dev/null || return 0
  only_zombies "$1"
}

# only_zombies <pgid>: succeeds only if a scan of /proc found members of group <pgid> and all were
# zombies. Without cat, awk or /proc, or with no member that /proc shows (hidepid), nothing is proven;
# a hidden member of another user is one this guard could not signal either.
# The comm field may hold spaces, ')' and newlines: the fields are those after a line's last ')', and a
# line with fewer than 18 of them is a fragment of a comm (at most 15 bytes). A zombie main thread with
# other threads still running (num_threads, field 18, above 1) counts as live.
# awk's exit status is the answer (no command substitution: one fork less); a missing awk exits 127.
only_zombies() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v g="$1" '
    { t = $0; if (!sub(/.*\)/, "", t)) next; n = split(t, f, " "); if (n < 18 || f[3] != g) next
      if (f[1] == "X" || (f[1] == "Z" && f[18] == 1)) z++; else live++ }
    END { exit !(z > 0 && live == 0) }' 2>/dev/null
}

report() {
  [ "$format" = quiet ] && return 0
  # Background: a full pipe or a stopped terminal must never delay anything after this.
  (
    if [ "$format" = json ]; then
      printf '{"time":"%s","level":"warn","event":"%s","parent_pid":%s,"pgid":%s,"signal":"SIG%s","msg":"%s"}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$parent" "$2" "$3" "$4" >&2
    else
      printf 'leader-run guard: %s\n' "$4" >&2
    fi
  ) </dev/null >/dev/null &
}

# arm <pgid> <signal> <signalAt> <killAt> <why>: a timer that sends <signal> (and SIGCONT, so stopped
# processes act on it) at signalAt and SIGKILL at killAt. Its pid is kept in timer_<pgid>.
arm() {
  (
    _sp=''
    trap 'kill -KILL "$_sp" 2>/dev/null; exit 0' USR1
    sleep_until "$3" "$1" || exit 0
    if kill "-$2" "-$1" 2>/dev/null; then
      kill -CONT "-$1" 2>/dev/null
      [ "$2" = CONT ] || report guard_killing "$1" "$2" "$5; sent SIG$2 to process group $1"
    fi
    # The group was signalled and is stopping: look for its end every 0.1 s, so that once it is gone this
    # timer (and after leader-run's death the guard, which a file-lock standby waits for) ends promptly.
    sleep_until "$4" "$1" 10 stopping || exit 0
    kill -KILL "-$1" 2>/dev/null && report guard_killing "$1" KILL "sent SIGKILL to process group $1"
  ) </dev/null >/dev/null &
  eval "timer_$1=\$!"
}

cancel() {
  [ -n "$1" ] && kill -USR1 "$1" 2>/dev/null
}

timer_of() {
  eval "_t=\${timer_$1-}"
}

numeric() {
  case $1 in '' | *[!0-9]*) return 1 ;; esac
  [ "$1" -gt 1 ]
}

while :; do
  IFS=' ' read -r cmd a b c d e f
  _rc=$?
  # A signal (bash's read returns >128 for a trapped one) is not the end of input.
  if [ "$_rc" -gt 128 ]; then continue; fi
  if [ "$_rc" -ne 0 ]; then
    # EOF; a last line without a newline still counts.
    [ -n "$cmd" ] || break
    _eof=1
  fi
  case $cmd in
    watch)
      numeric "$a" || continue
      timer_of "$a"
      eval "sig_$a=\$b grace_$a=\$c kill_$a=\$e"
      case " $groups " in *" $a "*) ;; *) groups="$groups $a" ;; esac
      if [ "$d" != 0 ]; then arm "$a" "$b" "$d" "$e" "deadline passed without renewal (leader-run pid $parent)"; else eval "timer_$a="; fi
      cancel "$_t"
      printf 'ack %s%s\n' "$a" "${f:+ $f}"
      ;;
    extend)
      for g in $groups; do
        timer_of "$g"
        eval "kill_$g=\$b _s=\$sig_$g"
        arm "$g" "$_s" "$a" "$b" "deadline passed without renewal (leader-run pid $parent)"
        cancel "$_t"
      done
      ;;
    unwatch)
      timer_of "$a"
      cancel "$_t"
      _rest=''
      for g in $groups; do [ "$g" = "$a" ] || _rest="$_rest $g"; done
      groups=$_rest
      ;;
    ping)
      printf 'pong %s\n' "$a"
      ;;
  esac
  [ -z "${_eof-}" ] || break
done

# EOF: leader-run is gone. Kill first, everything else after.
now_cs
timers=''
for g in $groups; do
  eval "_s=\$sig_$g"
  kill "-$_s" "-$g" 2>/dev/null && kill -CONT "-$g" 2>/dev/null
done
for g in $groups; do
  eval "_s=\$sig_$g _g=\$grace_$g _k=\$kill_$g"
  timer_of "$g"
  _at=$(( now + _g ))
  [ "$_k" != 0 ] && [ "$_k" -lt "$_at" ] && _at=$_k
  [ "$_at" -lt "$now" ] && _at=$now
  # The signal went out above; the new timer only escalates to SIGKILL.
  arm "$g" CONT "$now" "$_at" "leader-run (pid $parent) is gone"
  cancel "$_t"
  timer_of "$g"
  timers="$timers $_t"
  report guard_killing "$g" "$_s" "leader-run (pid $parent) is gone; sent SIG$_s to process group $g, SIGKILL in $(( (_at - now) * 10 )) ms"
done
# Only the timers: a report stuck on a full stderr must not keep the guard (which the file lock's record
# names while it lives) around.
[ -z "$timers" ] || wait $timers
