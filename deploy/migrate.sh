#!/bin/sh
# CoreDNS -> kdns on a live cluster, with a backup that deploy/rollback.sh restores.
#
#   deploy/migrate.sh [--dry-run] [--replace-corefile] KUSTOMIZATION BACKUP_DIR
#
# KUSTOMIZATION is deploy/ or one of deploy/overlays/*. Nothing in the cluster changes
# until every check has passed and the backup is written:
#
# 1. render KUSTOMIZATION into BACKUP_DIR/rendered.yaml;
# 2. pre-flight: read the live Corefile (ConfigMap kube-system/coredns) and run
#    `kdns validate` on it and on the Corefile that would replace it. A live Corefile kdns
#    cannot run stops here. A live Corefile that differs from the new one (stub domains,
#    hosts, rewrites you added) stops here too, with the diff: copy your changes into
#    deploy/base/Corefile, or pass --replace-corefile to drop them on purpose;
# 3. back up every object the apply touches: as read (BACKUP_DIR/original/), stripped of
#    what the server owns so that `kubectl replace` can put it back
#    (BACKUP_DIR/restore.yaml), and the objects that do not exist yet
#    (BACKUP_DIR/created.yaml, which the rollback deletes);
# 4. apply (server-side, taking over kubeadm's fields), unless --dry-run.
#
# Environment: KUBECTL (default `kubectl`; add `--context NAME` there), KDNS (the command
# that runs kdns, default `kdns`; e.g. `docker run --rm -i REGISTRY/kdns:TAG`, which
# reads the Corefile from /dev/stdin).
set -eu

KUBECTL=${KUBECTL:-kubectl}
KDNS=${KDNS:-kdns}
dry_run=false
replace_corefile=false
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=true ;;
    --replace-corefile) replace_corefile=true ;;
    -*) echo "migrate: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
if [ $# -ne 2 ]; then
  echo "usage: $0 [--dry-run] [--replace-corefile] KUSTOMIZATION BACKUP_DIR" >&2
  exit 2
fi
target=$1
backup=$2
if [ -e "$backup/restore.yaml" ]; then
  echo "migrate: $backup already holds a backup; choose a new directory" >&2
  exit 2
fi
mkdir -p "$backup/original"

# A stream of objects -> one "apiVersion kind namespace name" line each.
objects() {
  $KUBECTL create --dry-run=client -f "$1" \
    -o go-template='{{.apiVersion}} {{.kind}} {{or .metadata.namespace "-"}} {{.metadata.name}}{{"\n"}}'
}

# kubectl's unambiguous name for a kind: Deployment.v1.apps (core kinds stay bare).
resource() {
  case $1 in
    */*) echo "$2.${1#*/}.${1%/*}" ;;
    *) echo "$2" ;;
  esac
}

# Kind, namespace, name -> kubectl's arguments for that one object.
object_args() {
  if [ "$3" = - ]; then
    echo "$(resource "$1" "$2")/$4"
  else
    echo "$(resource "$1" "$2")/$4 -n $3"
  fi
}

corefile_of() {
  $KUBECTL create --dry-run=client -f "$1" -o go-template='{{if and (eq .kind "ConfigMap") (eq .metadata.name "coredns")}}{{index .data "Corefile"}}{{end}}'
}

validate() {
  if ! $KDNS validate /dev/stdin < "$1"; then
    echo "migrate: kdns cannot run $2; nothing was changed" >&2
    exit 1
  fi
}

echo "== render $target"
$KUBECTL kustomize "$target" > "$backup/rendered.yaml"

echo "== pre-flight"
$KUBECTL -n kube-system get configmap coredns -o go-template='{{index .data "Corefile"}}' \
  > "$backup/live.Corefile"
corefile_of "$backup/rendered.yaml" > "$backup/new.Corefile"
validate "$backup/live.Corefile" "the live Corefile (kube-system/coredns)"
validate "$backup/new.Corefile" "the Corefile of $target"
if ! diff -u "$backup/live.Corefile" "$backup/new.Corefile" > "$backup/Corefile.diff"; then
  cat "$backup/Corefile.diff"
  if [ "$replace_corefile" != true ]; then
    echo "migrate: the live Corefile differs from $target's (above); copy your changes into" \
      "deploy/base/Corefile, or pass --replace-corefile; nothing was changed" >&2
    exit 1
  fi
fi

echo "== backup into $backup"
: > "$backup/restore.yaml"
: > "$backup/created.yaml"
objects "$backup/rendered.yaml" > "$backup/objects.txt"
n=0
while read -r api kind ns name; do
  n=$((n + 1))
  # shellcheck disable=SC2046 # object_args is meant to split into words
  found=$($KUBECTL get $(object_args "$api" "$kind" "$ns" "$name") -o yaml --ignore-not-found)
  if [ -n "$found" ]; then
    file=$backup/original/$(printf %03d "$n")-$kind-$name.yaml
    printf '%s\n' "$found" > "$file"
    echo "---" >> "$backup/restore.yaml"
    $KUBECTL patch --local -f "$file" -o yaml --type merge -p \
      '{"metadata":{"resourceVersion":null,"uid":null,"creationTimestamp":null,"generation":null,"managedFields":null,"selfLink":null},"status":null}' \
      >> "$backup/restore.yaml"
    echo "backed up $kind $ns/$name"
  else
    # Newest first: the rollback deletes in the reverse order of the apply (webhook
    # configurations before the Service they call, a Namespace after what it holds).
    {
      echo "---"
      echo "apiVersion: $api"
      echo "kind: $kind"
      echo "metadata:"
      echo "  name: \"$name\""
      [ "$ns" = - ] || echo "  namespace: $ns"
      cat "$backup/created.yaml"
    } > "$backup/created.yaml.new"
    mv "$backup/created.yaml.new" "$backup/created.yaml"
    echo "new: $kind $ns/$name"
  fi
done < "$backup/objects.txt"

if [ "$dry_run" = true ]; then
  echo "== dry run: nothing applied; \`kubectl diff -f $backup/rendered.yaml\` shows the changes"
  exit 0
fi
echo "== apply"
$KUBECTL apply --server-side --force-conflicts --field-manager=kdns -f "$backup/rendered.yaml"
echo "done; watch \`kubectl -n kube-system rollout status deploy/coredns\`;" \
  "roll back with: deploy/rollback.sh $backup"
