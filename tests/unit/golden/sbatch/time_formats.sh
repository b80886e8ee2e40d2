#!/bin/bash
#SBATCH -t 1:30
#SBATCH -t 2-03:04:05
echo the last -t wins
