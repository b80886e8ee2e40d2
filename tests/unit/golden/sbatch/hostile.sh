#!/bin/bash
#SBATCH -o "/tmp/it's \"quoted\"; $HOME/%j.out"
#SBATCH -D '/tmp/a dir;$(id)`x`'
printf '%s\n' "$@"
