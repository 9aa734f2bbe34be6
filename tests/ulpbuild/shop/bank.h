#ifdef __cplusplus
extern "C" {
#endif
extern int rate;
int deposit(int account, int amount);
int withdraw(int account, int amount);
int audit(void);
const char *status(void);
/* tiny.c */
int twice(int x);
int thrice(int x);
int sum_to(int n);
/* libfees.so.1 */
extern int fee_percent;
int fee_on(int amount);
int fees_taken_total(void);
/* ledger.cc, C++ */
#define LEDGER_SCALE 100
int ledger_scale(int amount);
#ifdef __cplusplus
}
#endif
