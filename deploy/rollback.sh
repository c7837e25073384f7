#!/bin/sh
# Undo deploy/migrate.sh: every object it changed back as it was, every object it created
# gone.
#
#   deploy/rollback.sh BACKUP_DIR
#
# 1. delete what the migration created (BACKUP_DIR/created.yaml), newest first: the
#    webhook configurations go before anything else, so the API server stops calling kdns;
# 2. replace every object the migration changed with its backup
#    (BACKUP_DIR/restore.yaml): the ServiceAccount, kubeadm's ClusterRole and binding, the
#    Corefile, the kube-dns Service, then the Deployment, whose pod template going back is
#    a rolling update to CoreDNS with CoreDNS's grants and Corefile already in place.
#
# `kubectl rollout undo` alone would restore only the pod template. With the nodelocal
# overlay, each node keeps the interface and iptables rules of the node cache: see the
# README's "Rolling back".
# Environment: KUBECTL (default `kubectl`; add `--context NAME` there).
set -eu

KUBECTL=${KUBECTL:-kubectl}
if [ $# -ne 1 ] || [ ! -f "$1/restore.yaml" ] || [ ! -f "$1/created.yaml" ]; then
  echo "usage: $0 BACKUP_DIR (a directory deploy/migrate.sh wrote)" >&2
  exit 2
fi
backup=$1

if grep -q '^kind:' "$backup/created.yaml"; then
  echo "== delete what the migration created"
  $KUBECTL delete --ignore-not-found --wait=false -f "$backup/created.yaml"
fi
if grep -q '^kind:' "$backup/restore.yaml"; then
  echo "== restore what the migration changed"
  $KUBECTL replace -f "$backup/restore.yaml"
fi
if grep -q '^  name: "node-local-dns"' "$backup/created.yaml"; then
  echo "the node cache is gone, but its interface and iptables rules stay on every node:" \
    "see the README, \"Rolling back\""
fi
echo "done; watch \`kubectl -n kube-system rollout status deploy/coredns\`"
