#!/bin/sh
# Let cloud-init find the clouds the image is published to. imgpipe's base image
# lists only NoCloud (so a plain local boot never probes metadata addresses); an
# image imported into EC2 needs Ec2 too, or its instances get no SSH keys.
# Usage: cloud_datasources.sh <cloud.cfg.d dir> "<datasources, space separated>"
# Touches only imgpipe's own base config: other images keep their cloud-init setup.
set -eu
CFG="$1/90-imgpipe-base.cfg"
EXTRA="$2"
if [ ! -f "$CFG" ]; then
  echo "datasources: $CFG not present, cloud-init left as it is"
  exit 0
fi
list="NoCloud"
for ds in $EXTRA; do
  case "$ds" in *[!A-Za-z0-9]*) echo "datasources: bad name $ds" >&2; exit 2 ;; esac
  list="$list, $ds"
done
grep -v '^datasource_list:' "$CFG" > "$CFG.imgpipe" || true
echo "datasource_list: [$list, None]" >> "$CFG.imgpipe"
mv "$CFG.imgpipe" "$CFG"
echo "datasources: [$list, None]"
