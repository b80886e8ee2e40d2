#!/bin/bash
#SBATCH --array=0-3 -d aftercorr:777
echo "same task of 777 succeeded"
