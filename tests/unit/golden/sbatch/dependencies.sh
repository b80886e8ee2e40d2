#!/bin/bash
#SBATCH --dependency=afterok:111:222_5,afterany:333,afternotok:444_1,after:555,singleton
#SBATCH -J post
echo after
