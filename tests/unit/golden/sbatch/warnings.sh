#!/bin/bash
#SBATCH --mail-type=END,FAIL
#SBATCH --mail-user=ada@example.org
#SBATCH -A physics --qos=high
#SBATCH --gres=gpu:tesla:2,license:1
#SBATCH --frobnicate=7 stray
#SBATCH --mem=0
#SBATCH --no-requeue
#MNP --bogus
echo warned
