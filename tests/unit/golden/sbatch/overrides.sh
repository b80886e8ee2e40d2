#!/bin/bash
#SBATCH -J from-script -N 2 --mem=1G -p batch -t 60
#SBATCH --export=NONE
hostname
